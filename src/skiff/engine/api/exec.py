"""Exec endpoints of the Engine API: /containers/{id}/exec and /exec/{id}/..."""

from __future__ import annotations

import asyncio
import contextlib
import json

from skiff.engine.api.containers import frame, parse_detach_keys, services
from skiff.engine.daemon import Daemon
from skiff.engine.exec.service import ExecInstance, ExecService
from skiff.engine.http.server import (
    HijackResponse,
    Request,
    Response,
    Router,
    json_response,
    wants_upgrade,
)
from skiff.errors import InvalidArgument, SkiffError


def register(router: Router, daemon: Daemon) -> None:
    containers, _ = services(daemon)
    svc = daemon.services.get("exec")
    if svc is None:
        svc = ExecService(containers)
        daemon.services["exec"] = svc
    execs: ExecService = svc

    async def create(request: Request) -> Response:
        body = await request.json(required=True)
        if not isinstance(body, dict):
            raise InvalidArgument("exec config must be a JSON object")
        if body.get("DetachKeys"):
            parse_detach_keys(body["DetachKeys"])
        inst = execs.create(request.params["id"], body)
        return json_response({"Id": inst.id}, 201)

    async def start(request: Request) -> Response:
        inst = execs.get(request.params["id"])
        body = await request.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("exec start config must be a JSON object")
        if body.get("Tty") is not None:
            inst.config["Tty"] = bool(body["Tty"]) or bool(inst.config.get("Tty"))
        if body.get("ConsoleSize"):
            inst.config["ConsoleSize"] = body["ConsoleSize"]
        if body.get("Detach"):
            await execs.start(inst, False)
            return Response(200, b"", None, "application/json")
        tty = bool(inst.config.get("Tty"))
        # as dockerd, only a missing exec is refused before the upgrade: the rest (already
        # run, container gone meanwhile) goes into the stream, from execs.start below
        detach = (
            parse_detach_keys(inst.config.get("DetachKeys"))
            if inst.config.get("DetachKeys")
            else b""
        )

        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            # the process starts once the client holds the upgraded stream, as with
            # dockerd: a client whose HTTP parser buffers past the head loses nothing
            queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
            try:
                io = await execs.start(inst, True, [lambda s, d: queue.put_nowait((s, d))])
            except SkiffError as e:
                writer.write(
                    (str(e) + "\r\n").encode() if tty else frame("stdout", (str(e) + "\n").encode())
                )
                with contextlib.suppress(Exception):
                    await writer.drain()
                    writer.close()
                return
            await session(execs, inst, io, queue, tty, detach, reader, writer)

        return HijackResponse(
            run,
            wants_upgrade(request),
            "application/vnd.docker.raw-stream"
            if tty
            else "application/vnd.docker.multiplexed-stream",
        )

    async def resize(request: Request) -> Response:
        inst = execs.get(request.params["id"])
        await execs.resize(inst, request.q_int("w", 0) or 0, request.q_int("h", 0) or 0)
        return Response(200, b"", None, "text/plain")

    async def inspect(request: Request) -> Response:
        return json_response(execs.get(request.params["id"]).inspect())

    router.add("POST", "/containers/{id}/exec", create)
    router.add("POST", "/exec/{id}/start", start)
    router.add("POST", "/exec/{id}/resize", resize)
    router.add("GET", "/exec/{id}/json", inspect)


async def session(
    execs: ExecService,
    inst: ExecInstance,
    io: object,
    queue: asyncio.Queue[tuple[str, bytes]],
    tty: bool,
    detach: bytes,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    from skiff.engine.containers.stdio import ProcessStdio

    assert isinstance(io, ProcessStdio)
    want = {
        "stdout": bool(inst.config.get("AttachStdout")),
        "stderr": bool(inst.config.get("AttachStderr")),
    }

    async def pump_in() -> None:
        try:
            while True:
                data = await reader.read(32768)
                if not data:
                    break
                if detach and detach in data:
                    return
                await io.write_stdin(data)
        except (ConnectionError, OSError):
            return
        # our end first, then CloseIO for the shim's own writer: the EOF comes after
        # what is buffered in the FIFO
        io.close_stdin()
        with contextlib.suppress(SkiffError):  # exited and deleted meanwhile
            await execs.containers.sup().close_stdin(inst.container.id, inst.id)

    async def pump_out() -> None:
        while True:
            name, data = await queue.get()
            if not name:
                return
            if not want.get(name) and not tty:
                continue
            writer.write(data if tty else frame(name, data))
            await writer.drain()

    loop = asyncio.get_running_loop()
    in_task = loop.create_task(pump_in()) if io.has_stdin else None
    out_task = loop.create_task(pump_out())
    try:
        with contextlib.suppress(ConnectionError, OSError):
            await out_task
        # the client asks for ExitCode as soon as the stream ends: have it ready
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(inst.exited.wait(), 10)
    finally:
        if in_task is not None and not in_task.done():
            in_task.cancel()
        with contextlib.suppress(Exception):
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()


_ = json
