"""Volume endpoints of the Engine API (/volumes/...), the local driver."""

from __future__ import annotations

from skiff.engine.api.containers import services
from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import Request, Response, Router, json_response, no_content
from skiff.errors import InvalidArgument


def register(router: Router, daemon: Daemon) -> None:
    _, vols = services(daemon)

    async def create(request: Request) -> Response:
        body = await request.json() or {}
        if not isinstance(body, dict):
            raise InvalidArgument("volume config must be a JSON object")
        labels = body.get("Labels") or {}
        opts = body.get("DriverOpts") or {}
        if not isinstance(labels, dict) or not isinstance(opts, dict):
            raise InvalidArgument("Labels and DriverOpts must be objects")
        vol = vols.create(
            str(body.get("Name") or ""), labels, opts, str(body.get("Driver") or "local")
        )
        return json_response(vol.inspect(), 201)

    async def list_(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        for key in filters:
            if key not in ("name", "driver", "label", "dangling"):
                raise InvalidArgument(f"invalid filter '{key}'")
        return json_response(
            {"Volumes": [v.inspect() for v in vols.list(filters)], "Warnings": None}
        )

    async def inspect(request: Request) -> Response:
        return json_response(vols.get(request.params["name"]).inspect())

    async def remove(request: Request) -> Response:
        vols.remove(request.params["name"], force=request.q_bool("force"))
        return no_content()

    async def prune(request: Request) -> Response:
        removed, space = vols.prune(parse_filters(request.q_json("filters")))
        return json_response({"VolumesDeleted": removed or None, "SpaceReclaimed": space})

    router.add("POST", "/volumes/create", create)
    router.add("GET", "/volumes", list_)
    router.add("POST", "/volumes/prune", prune)
    router.add("GET", "/volumes/{name}", inspect)
    router.add("DELETE", "/volumes/{name}", remove)
