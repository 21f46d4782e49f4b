"""Image endpoints of the Engine API: list, inspect, history, pull/import,
push, tag, remove, save, load, prune. Handlers decode, call the image
service, encode; the logic lives in skiff.engine.images.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import (
    HTTPError,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
)
from skiff.engine.images import ImageService, views
from skiff.engine.images.service import parse_auth_header
from skiff.errors import InvalidArgument, NotImplemented_


def register(router: Router, daemon: Daemon) -> None:
    service = daemon.services.get("images")
    if service is None:
        service = ImageService(daemon)
        daemon.services["images"] = service
    assert isinstance(service, ImageService)
    images: ImageService = service

    async def list_images(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        if request.q("filter"):
            filters.setdefault("reference", set()).add(str(request.q("filter")))
        all_views = await images.views()

        def lookup(name: str) -> views.ImageView:
            for v in all_views:
                if v.id == name or v.id[7:].startswith(name.removeprefix("sha256:")):
                    return v
            for v in all_views:
                if views.reference_matches(v, [name, f"{name}:latest"]):
                    return v
            raise InvalidArgument(f"No such image: {name}")

        selected = views.apply_filters(all_views, filters, lookup)
        shared = request.q_bool("shared-size")
        out = []
        for v in selected:
            entry = views.summary(v)
            if shared:
                entry["SharedSize"] = 0
            if not request.version_at_least("1.44"):
                entry["VirtualSize"] = v.size
            out.append(entry)
        return json_response(out)

    async def inspect(request: Request) -> Response:
        view = await images.find(request.params["name"])
        info = views.inspect(view, legacy=not request.version_at_least("1.45"))
        if request.version_at_least("1.44"):
            info.pop("VirtualSize", None)
        return json_response(info)

    async def history(request: Request) -> Response:
        view = await images.find(request.params["name"])
        return json_response(views.history(view))

    async def create(request: Request) -> Response:
        source = request.q("fromSrc")
        if source is not None:
            if source != "-":
                raise NotImplemented_("importing from a URL is not supported: use fromSrc=-")
            path = await images.spool(_body(request))
            changes = request.query.get("changes", [])
            return StreamResponse(
                images.import_stream(
                    path,
                    request.q("repo") or "",
                    request.q("tag") or "",
                    changes,
                    request.q("message") or "",
                    request.q("platform") or "",
                )
            )
        image = request.q("fromImage")
        if not image:
            raise InvalidArgument("fromImage or fromSrc is required")
        creds = parse_auth_header(request.headers.get("x-registry-auth"))
        plan = await images.prepare_pull(
            image, request.q("tag") or "", creds, request.q("platform") or ""
        )
        return StreamResponse(images.pull_stream(plan))

    async def push(request: Request) -> Response:
        creds = parse_auth_header(request.headers.get("x-registry-auth"))
        records = await images.prepare_push(request.params["name"], request.q("tag") or "")
        return StreamResponse(images.push_stream(records, creds))

    async def tag(request: Request) -> Response:
        await images.tag(request.params["name"], request.q("repo") or "", request.q("tag") or "")
        return Response(201)

    async def remove(request: Request) -> Response:
        result = await images.delete(
            request.params["name"], request.q_bool("force"), not request.q_bool("noprune")
        )
        return json_response(result)

    async def save_one(request: Request) -> Response:
        items = await images.prepare_save([request.params["name"]])
        return StreamResponse(images.save_stream(items), content_type="application/x-tar")

    async def save_many(request: Request) -> Response:
        names = request.query.get("names", [])
        if not names:
            raise InvalidArgument("no images named: give names=")
        items = await images.prepare_save(names)
        return StreamResponse(images.save_stream(items), content_type="application/x-tar")

    async def load(request: Request) -> Response:
        path = await images.spool(_body(request))
        return StreamResponse(images.load_stream(path, request.q_bool("quiet")))

    async def prune(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        return json_response(await images.prune(filters))

    router.add("GET", "/images/json", list_images)
    router.add("POST", "/images/create", create)
    router.add("POST", "/images/load", load)
    router.add("POST", "/images/prune", prune)
    router.add("GET", "/images/get", save_many)
    # Names contain slashes (127.0.0.1:5000/busybox), so the routes with a
    # name take the rest of the path and the action is its last component.
    by_suffix = {
        "GET": {"json": inspect, "history": history, "get": save_one},
        "POST": {"push": push, "tag": tag},
    }

    def dispatch(method: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            name, _, action = request.params["name"].rpartition("/")
            found = by_suffix[method].get(action)
            if not name or found is None:
                raise HTTPError(404, "page not found")
            request.params["name"] = name
            return await found(request)

        return handler

    router.add("GET", "/images/{name}", dispatch("GET"))
    router.add("POST", "/images/{name}", dispatch("POST"))
    router.add("DELETE", "/images/{name}", remove)


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.body:
        yield chunk
