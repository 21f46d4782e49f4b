"""Network endpoints of the Engine API, for now the three built-in networks.

`none`, `host` and `bridge` are listed and inspected so that clients that ask
(compose, docker-py) do not fail; creating networks and connecting containers
come with the networking library (skiff.engine.network).
"""

from __future__ import annotations

import hashlib
from typing import Any

from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import Request, Response, Router, json_response
from skiff.errors import InvalidArgument, NotFound, NotImplemented_

BUILTIN = (("bridge", "bridge"), ("host", "host"), ("none", "null"))


def _network(name: str, driver: str, containers: dict[str, Any]) -> dict[str, Any]:
    nid = hashlib.sha256(f"skiff-network-{name}".encode()).hexdigest()
    config = [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}] if name == "bridge" else []
    return {
        "Name": name,
        "Id": nid,
        "Created": "0001-01-01T00:00:00Z",
        "Scope": "local",
        "Driver": driver,
        "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": None, "Config": config},
        "Internal": False,
        "Attachable": False,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": {"com.docker.network.bridge.default_bridge": "true"} if name == "bridge" else {},
        "Labels": {},
    }


def register(router: Router, daemon: Daemon) -> None:
    def members(name: str) -> dict[str, Any]:
        svc = daemon.services.get("containers")
        out: dict[str, Any] = {}
        if svc is None:
            return out
        for c in svc.containers.values():
            nets = (c.data.get("NetworkSettings") or {}).get("Networks") or {}
            if name in nets and c.running:
                out[c.id] = {
                    "Name": c.name.lstrip("/"),
                    "EndpointID": "",
                    "MacAddress": "",
                    "IPv4Address": "",
                    "IPv6Address": "",
                }
        return out

    def find(ref: str) -> tuple[str, str]:
        for name, driver in BUILTIN:
            nid = hashlib.sha256(f"skiff-network-{name}".encode()).hexdigest()
            if ref == name or (len(ref) >= 3 and nid.startswith(ref)):
                return name, driver
        raise NotFound(f"network {ref} not found")

    async def list_(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        out = []
        for name, driver in BUILTIN:
            net = _network(name, driver, {})
            if "name" in filters and not any(w in name for w in filters["name"]):
                continue
            if "driver" in filters and driver not in filters["driver"]:
                continue
            if "id" in filters and not any(net["Id"].startswith(w) for w in filters["id"]):
                continue
            if "type" in filters and "builtin" not in filters["type"]:
                continue
            out.append(net)
        return json_response(out)

    async def inspect(request: Request) -> Response:
        name, driver = find(request.params["id"])
        return json_response(_network(name, driver, members(name)))

    async def create(request: Request) -> Response:
        body = await request.json(required=True)
        if not isinstance(body, dict) or not body.get("Name"):
            raise InvalidArgument("network name is required")
        raise NotImplemented_("creating networks is not supported yet")

    async def prune(request: Request) -> Response:
        return json_response({"NetworksDeleted": None})

    router.add("GET", "/networks", list_)
    router.add("POST", "/networks/create", create)
    router.add("POST", "/networks/prune", prune)
    router.add("GET", "/networks/{id}", inspect)
