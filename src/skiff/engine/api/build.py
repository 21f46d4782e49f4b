"""POST /build (the classic builder's endpoint) and POST /build/prune.
Handlers decode the query, hand the context to daemon.services["build"]
and stream its JSON messages; the logic lives in skiff.engine.build.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from skiff.engine.build.builder import BuildOptions
from skiff.engine.build.service import BuildService, split_values
from skiff.engine.daemon import Daemon
from skiff.engine.http.server import Request, Response, Router, StreamResponse, json_response
from skiff.errors import InvalidArgument


def _json_query(request: Request, name: str, default: Any) -> Any:
    raw = request.q(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise InvalidArgument(f"invalid {name}: {raw}") from None


def options(request: Request) -> BuildOptions:
    if request.q("version") == "2":
        raise InvalidArgument(
            "BuildKit is not supported by skiffd: use the classic builder (version=1)"
        )
    if request.q("remote"):
        raise InvalidArgument("remote build contexts are not supported")
    build_args = _json_query(request, "buildargs", {})
    labels = _json_query(request, "labels", {})
    cache_from = _json_query(request, "cachefrom", [])
    if (
        not isinstance(build_args, dict)
        or not isinstance(labels, dict)
        or not isinstance(cache_from, list)
    ):
        raise InvalidArgument("buildargs and labels must be JSON objects, cachefrom a JSON list")
    return BuildOptions(
        dockerfile=request.q("dockerfile") or "Dockerfile",
        tags=[t for t in request.query.get("t", []) if t],
        build_args={str(k): (None if v is None else str(v)) for k, v in build_args.items()},
        target=request.q("target") or "",
        labels={str(k): str(v) for k, v in labels.items()},
        no_cache=request.q_bool("nocache"),
        pull=request.q_bool("pull"),
        network_mode=request.q("networkmode") or "",
        platform=request.q("platform") or "",
        cache_from=[str(c) for c in cache_from],
        extra_hosts=split_values(request.query.get("extrahosts", [])),
        quiet=request.q_bool("q"),
        shm_size=request.q_int("shmsize", 0) or 0,
    )


def register(router: Router, daemon: Daemon) -> None:
    service = daemon.services.get("build")
    if service is None:
        service = BuildService(daemon)
        daemon.services["build"] = service
    assert isinstance(service, BuildService)
    builds: BuildService = service

    async def build(request: Request) -> Response:
        opts = options(request)

        async def body() -> AsyncIterator[bytes]:
            # pieces of 256 KiB or more (a chunked upload comes in many small chunks):
            # fewer hand-overs to the thread that unpacks the context
            parts: list[bytes] = []
            size = 0
            while chunk := await request.body.read(1 << 20):
                parts.append(chunk)
                size += len(chunk)
                if size >= 1 << 18:
                    yield b"".join(parts)
                    parts, size = [], 0
            if parts:
                yield b"".join(parts)

        messages = await builds.build(body(), opts)

        async def chunks() -> AsyncIterator[bytes]:
            async for batch in messages:
                yield "".join(json.dumps(msg) + "\r\n" for msg in batch).encode()

        return StreamResponse(chunks())

    async def prune(request: Request) -> Response:
        filters = _json_query(request, "filters", {})
        keep = request.q_int("keep-storage", 0) or 0
        if isinstance(filters, dict) and filters.get("keep-storage"):
            keep = int(
                next(iter(filters["keep-storage"]))
                if isinstance(filters["keep-storage"], (list, dict))
                else filters["keep-storage"]
            )
        return json_response(await builds.prune(request.q_bool("all", True), keep))

    router.add("POST", "/build", build)
    router.add("POST", "/build/prune", prune)
