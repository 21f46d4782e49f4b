"""Docker's JSON shapes for networks: `network inspect`/`ls` and a container's
NetworkSettings. The Engine API handlers of skiffd return these as they are."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skiff.engine.network.model import DRIVER_BRIDGE, Endpoint, Network


def _sorted(m: dict[str, Any] | None) -> dict[str, Any] | None:
    """A map in Go's JSON order: encoding/json writes map keys sorted."""
    return None if m is None else dict(sorted(m.items()))


def network_json(net: Network, endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    containers: dict[str, Any] = {}
    for ep in sorted(endpoints, key=lambda e: e.container_id):
        containers[ep.container_id] = {
            "Name": ep.container_name,
            "EndpointID": ep.id,
            "MacAddress": ep.mac,
            "IPv4Address": f"{ep.ip}/{ep.prefixlen}" if ep.ip else "",
            "IPv6Address": "",
        }
    return {
        "Name": net.name,
        "Id": net.id,
        "Created": net.created,
        "Scope": "local",
        "Driver": net.driver,
        "EnableIPv6": net.enable_ipv6,
        "IPAM": {
            "Driver": "default",
            "Options": (
                None
                if net.default_bridge or net.driver != DRIVER_BRIDGE
                else _sorted(net.ipam_options)
            ),
            # libnetwork's IPAMConfig order: Subnet, IPRange (when set), Gateway
            "Config": [
                {
                    "Subnet": c.subnet,
                    **({"IPRange": c.ip_range} if c.ip_range else {}),
                    "Gateway": c.gateway,
                }
                for c in net.ipam
            ],
        },
        "Internal": net.internal,
        "Attachable": net.attachable,
        "Ingress": False,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": False,
        "Containers": containers,
        "Options": _sorted(net.options),
        "Labels": _sorted(net.labels),
    }


def endpoint_settings(net: Network, ep: Endpoint) -> dict[str, Any]:
    """One entry of a container's NetworkSettings.Networks."""
    user_net = net.driver == DRIVER_BRIDGE and not net.default_bridge
    dns_names = [ep.container_name, ep.container_id[:12], *ep.aliases] if user_net else None
    return {
        "IPAMConfig": {"IPv4Address": ep.static_ip} if ep.static_ip else None,
        "Links": None,
        "Aliases": list(ep.aliases) if user_net else None,
        "MacAddress": ep.mac,
        "DriverOpts": None,
        "NetworkID": net.id,
        "EndpointID": ep.id,
        "Gateway": ep.gateway,
        "IPAddress": ep.ip,
        "IPPrefixLen": ep.prefixlen,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": dns_names,
    }


def ports_json(endpoints: Iterable[Endpoint]) -> dict[str, list[dict[str, str]] | None]:
    """NetworkSettings.Ports: "80/tcp" -> [{"HostIp": "0.0.0.0", "HostPort": "8080"}]."""
    out: dict[str, list[dict[str, str]] | None] = {}
    for ep in endpoints:
        for p in ep.ports:
            out.setdefault(f"{p.container_port}/{p.proto}", []).append(  # type: ignore[union-attr]
                {"HostIp": p.bind_ip, "HostPort": str(p.host_port)}
            )
    return dict(sorted(out.items()))  # a Go map: keys sorted as strings
