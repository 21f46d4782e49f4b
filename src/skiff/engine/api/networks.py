"""Network endpoints of the Engine API (/networks/...), over daemon.services["networks"].

Docker's JSON shapes and status codes: list (with filters), inspect, create,
remove, connect, disconnect and prune. Connecting and disconnecting go through
the container service, which knows whether the container runs (live attach)
or only records the network for its next start.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from typing import Any

from skiff.engine.containers.logs import parse_time
from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import Request, Response, Router, json_response, no_content
from skiff.engine.network.errors import Forbidden
from skiff.engine.network.manager import PREDEFINED
from skiff.engine.network.model import DRIVER_BRIDGE
from skiff.engine.network.service import NetworkService
from skiff.errors import InvalidArgument, NotFound

_FILTERS = ("name", "id", "label", "driver", "type", "dangling", "scope")


def _builtin(net: dict[str, Any]) -> bool:
    return net["Name"] in PREDEFINED and (
        net["Driver"] != DRIVER_BRIDGE
        or net["Options"].get("com.docker.network.bridge.default_bridge") == "true"
    )


def _labels_match(labels: dict[str, str], wanted: set[str]) -> bool:
    for w in wanted:
        k, sep, v = w.partition("=")
        if k not in labels or (sep and labels[k] != v):
            return False
    return True


def _search(pattern: str, text: str) -> bool:
    try:
        return re.search(pattern, text) is not None
    except re.error:
        return pattern in text


def _bool_filter(wanted: set[str], key: str) -> bool:
    if len(wanted) != 1:
        raise InvalidArgument(f"invalid filter '{key}'")
    value = next(iter(wanted)).lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}'")


def _until(filters: dict[str, set[str]]) -> float | None:
    if "until" not in filters:
        return None
    text = next(iter(filters["until"]))
    try:
        return parse_time(text)
    except ValueError:
        pass
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(h|m|s|ms)?", text)
    if m:
        scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}.get(m.group(2) or "s", 1)
        return time.time() - float(m.group(1)) * scale
    raise InvalidArgument(f"invalid filter 'until={text}'")


def _str_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(
            f"json: cannot unmarshal {type(value).__name__} into Go struct field "
            f"CreateRequest.{key} of type map[string]string"
        )
    return dict(value)


def register(router: Router, daemon: Daemon) -> None:
    def service() -> NetworkService:
        svc = daemon.services.get("networks")
        if svc is None:
            raise NotFound("networking is not available")
        if svc.error is not None:
            raise Forbidden(f"networking failed to start: {svc.error}")
        assert isinstance(svc, NetworkService)
        return svc

    async def ready() -> NetworkService:
        svc = service()
        if not svc.started.is_set():
            await asyncio.wait_for(svc.started.wait(), 120)
        if svc.error is not None:
            raise Forbidden(f"networking failed to start: {svc.error}")
        containers = daemon.services.get("containers")
        if containers is not None and not containers.restored.is_set():
            await asyncio.wait_for(containers.restored.wait(), 120)
        return svc

    def with_names(net: dict[str, Any]) -> dict[str, Any]:
        """Containers' names as the engine knows them now (a rename changes them)."""
        containers = daemon.services.get("containers")
        if containers is None:
            return net
        for cid, entry in net["Containers"].items():
            c = containers.containers.get(cid)
            if c is not None:
                entry["Name"] = c.name.lstrip("/")
        return net

    async def list_(request: Request) -> Response:
        svc = await ready()
        filters = parse_filters(request.q_json("filters"))
        for key in filters:
            if key not in _FILTERS:
                raise InvalidArgument(f"invalid filter '{key}'")
        out = []
        for net in await svc.call(svc.manager.list_networks_json):
            if "name" in filters and not any(_search(w, net["Name"]) for w in filters["name"]):
                continue
            if "id" in filters and not any(_search(w, net["Id"]) for w in filters["id"]):
                continue
            if "driver" in filters and net["Driver"] not in filters["driver"]:
                continue
            if "scope" in filters and net["Scope"] not in filters["scope"]:
                continue
            if "label" in filters and not _labels_match(net["Labels"], filters["label"]):
                continue
            if "type" in filters:
                for w in filters["type"]:
                    if w not in ("custom", "builtin"):
                        raise InvalidArgument(f"invalid filter: 'type'='{w}'")
                if ("builtin" if _builtin(net) else "custom") not in filters["type"]:
                    continue
            if "dangling" in filters:
                dangling = not _builtin(net) and not net["Containers"]
                if dangling != _bool_filter(filters["dangling"], "dangling"):
                    continue
            # `docker network ls` lists no containers (as dockerd: only inspect has them)
            net["Containers"] = {}
            out.append(net)
        return json_response(out)

    async def inspect(request: Request) -> Response:
        svc = await ready()
        scope = request.q("scope")
        net = with_names(await svc.call(svc.manager.inspect_network, request.params["id"]))
        if scope and scope != net["Scope"]:
            raise NotFound(f"network {request.params['id']} not found")
        return json_response(net)

    async def create(request: Request) -> Response:
        svc = await ready()
        body = await request.json(required=True)
        if not isinstance(body, dict):
            raise InvalidArgument("network config must be a JSON object")
        name = body.get("Name")
        if not isinstance(name, str) or not name:
            raise InvalidArgument("network name is required" if not name else "invalid name")
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        driver = body.get("Driver") or DRIVER_BRIDGE
        if driver not in (DRIVER_BRIDGE, "host", "null", "none"):
            raise NotFound(f'plugin "{driver}" not found')
        ipam = body.get("IPAM") or {}
        if not isinstance(ipam, dict):
            raise InvalidArgument("invalid IPAM config")
        if (ipam.get("Driver") or "default") != "default":
            raise NotFound(f'plugin "{ipam["Driver"]}" not found')
        subnet = gateway = ip_range = None
        for cfg in ipam.get("Config") or []:
            if not isinstance(cfg, dict):
                raise InvalidArgument("invalid IPAM config")
            sub = cfg.get("Subnet") or ""
            try:
                if sub and ipaddress.ip_network(sub, strict=False).version == 6:
                    continue  # IPv6 is not supported: its config is ignored
            except ValueError:
                raise InvalidArgument(f"invalid subnet {sub} : invalid CIDR address: {sub}")
            if subnet is not None:
                raise Forbidden("skiffd supports one IPv4 IPAM config per network")
            subnet = sub or None
            gateway = cfg.get("Gateway") or None
            ip_range = cfg.get("IPRange") or None
            if not subnet and (gateway or ip_range):
                raise InvalidArgument("ipam configuration without subnet")
        for key, value in (("Subnet", subnet), ("IPRange", ip_range)):
            if value:
                try:
                    ipaddress.IPv4Network(value, strict=False)
                except ValueError:
                    raise InvalidArgument(f"invalid {key.lower()} {value}: invalid CIDR address")
        if gateway:
            try:
                ipaddress.IPv4Address(gateway)
            except ValueError:
                raise InvalidArgument(f"invalid gateway address {gateway}")
        labels = _str_map(body, "Labels")
        options = _str_map(body, "Options")
        # IPAM.Options comes back as sent: null when absent (docker-py), {} from the CLI
        ipam_options = None if ipam.get("Options") is None else _str_map(ipam, "Options")
        net = await svc.call(
            svc.manager.create_network,
            name,
            driver=driver if driver != "none" else "null",
            subnet=subnet,
            gateway=gateway,
            ip_range=ip_range,
            internal=bool(body.get("Internal")),
            attachable=bool(body.get("Attachable")),
            enable_ipv6=False,
            labels=labels,
            options=options,
            ipam_options=ipam_options,
        )
        daemon.events.emit("network", "create", net.id, {"name": net.name, "type": net.driver})
        return json_response({"Id": net.id, "Warning": ""}, 201)

    async def delete(request: Request) -> Response:
        svc = await ready()
        net = await svc.call(svc.manager.get_network, request.params["id"])
        await svc.call(svc.manager.remove_network, net.id)
        daemon.events.emit("network", "destroy", net.id, {"name": net.name, "type": net.driver})
        return no_content()

    def containers() -> Any:
        c = daemon.services.get("containers")
        if c is None:
            raise NotFound("containers are not available")
        return c

    async def connect(request: Request) -> Response:
        await ready()
        body = await request.json(required=True)
        if not isinstance(body, dict) or not body.get("Container"):
            raise InvalidArgument("no container specified")
        config = body.get("EndpointConfig") or {}
        if not isinstance(config, dict):
            raise InvalidArgument("invalid EndpointConfig")
        await containers().connect_network(request.params["id"], str(body["Container"]), config)
        return Response(200)

    async def disconnect(request: Request) -> Response:
        await ready()
        body = await request.json(required=True)
        if not isinstance(body, dict) or not body.get("Container"):
            raise InvalidArgument("no container specified")
        await containers().disconnect_network(
            request.params["id"], str(body["Container"]), bool(body.get("Force"))
        )
        return Response(200)

    async def prune(request: Request) -> Response:
        svc = await ready()
        filters = parse_filters(request.q_json("filters"))
        for key in filters:
            if key not in ("label", "label!", "until"):
                raise InvalidArgument(f"invalid filter '{key}'")
        until = _until(filters)
        deleted = []
        for net in await svc.call(svc.manager.list_networks_json):
            if _builtin(net) or net["Containers"]:
                continue
            if "label" in filters and not _labels_match(net["Labels"], filters["label"]):
                continue
            if "label!" in filters and any(
                _labels_match(net["Labels"], {w}) for w in filters["label!"]
            ):
                continue
            if until is not None and parse_time(net["Created"]) > until:
                continue
            try:
                await svc.call(svc.manager.remove_network, net["Id"])
            except (Forbidden, NotFound):
                continue  # became used (or went) meanwhile
            deleted.append(net["Name"])
            daemon.events.emit(
                "network", "destroy", net["Id"], {"name": net["Name"], "type": net["Driver"]}
            )
        daemon.events.emit("network", "prune", "", {})
        return json_response({"NetworksDeleted": deleted or None})

    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
    router.add("DELETE", "/networks/{id}", delete)
    router.add("POST", "/networks/{id}/connect", connect)
    router.add("POST", "/networks/{id}/disconnect", disconnect)
