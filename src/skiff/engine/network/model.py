"""The records skiffd's network layer keeps: networks, endpoints, port bindings.

Plain typed dataclasses, turned into JSON only by `store` (the state file) and
`inspect` (Docker's API shapes).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from skiff.engine.network.errors import InvalidPortSpec

DRIVER_BRIDGE = "bridge"
DRIVER_HOST = "host"
DRIVER_NULL = "null"

#: Docker's option key naming the bridge interface of a bridge network.
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"


@dataclass(slots=True, kw_only=True)
class IPAMConfig:
    subnet: str  # "172.30.0.0/16"
    gateway: str  # "172.30.0.1"
    ip_range: str = ""  # "" means the whole subnet

    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    def pool(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.ip_range or self.subnet)


@dataclass(slots=True, kw_only=True)
class Network:
    id: str
    name: str
    driver: str
    created: str
    ipam: list[IPAMConfig] = field(default_factory=list)
    user_subnet: bool = False  # the subnet was given by the user (static --ip allowed)
    internal: bool = False
    attachable: bool = False
    enable_ipv6: bool = False
    default_bridge: bool = False
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    #: IPAM.Options as the create request gave them (dockerd echoes null when absent)
    ipam_options: dict[str, str] | None = field(default_factory=dict)
    bridge: str = ""  # interface name on the host, bridge driver only
    #: IPAM allocations: address -> endpoint id (the gateway maps to "gateway")
    allocated: dict[str, str] = field(default_factory=dict)

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Network:
        raw = dict(raw)
        raw["ipam"] = [IPAMConfig(**c) for c in raw.get("ipam", [])]
        return Network(**raw)


@dataclass(frozen=True, slots=True, kw_only=True)
class PortBinding:
    """One published port; host_port 0 asks for an ephemeral port."""

    container_port: int
    proto: str = "tcp"
    host_ip: str = ""  # "" binds every address (0.0.0.0, and [::] beside it: "::")
    host_port: int = 0
    #: for `-p 8000-8010:80`: any free port in [host_port, host_port_end]
    host_port_end: int = 0

    @property
    def bind_ip(self) -> str:
        return self.host_ip or "0.0.0.0"


@dataclass(slots=True, kw_only=True)
class Endpoint:
    id: str
    network_id: str
    container_id: str
    container_name: str  # without Docker's leading slash
    ifname: str  # inside the container, "eth0"
    host_ifname: str  # the veth end on the bridge, "" for none/host
    netns_path: str
    netns_inode: int
    ip: str = ""
    prefixlen: int = 0
    gateway: str = ""
    mac: str = ""
    static_ip: str = ""  # as requested with --ip
    aliases: list[str] = field(default_factory=list)
    ports: list[PortBinding] = field(default_factory=list)  # concrete host ports
    dns: list[str] = field(default_factory=list)  # --dns: what the embedded DNS forwards to

    @staticmethod
    def from_json(raw: dict[str, Any]) -> Endpoint:
        raw = dict(raw)
        raw["ports"] = [PortBinding(**p) for p in raw.get("ports", [])]
        return Endpoint(**raw)


def to_json(obj: Network | Endpoint) -> dict[str, Any]:
    return asdict(obj)


def mac_for_ip(ip: str) -> str:
    """Docker's MAC: the locally administered prefix 02:42 and the four IPv4 bytes."""
    octets = ipaddress.IPv4Address(ip).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in octets)


def _port_range(text: str, spec: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    start, end = int(lo), int(hi or lo)
    if not (0 < start <= end <= 65535):
        raise InvalidPortSpec(spec, "invalid port range")
    return start, end


def parse_publish(spec: str) -> list[PortBinding]:
    """`-p [ip:][host:]container[/proto]` with ranges, as the docker CLI reads it."""
    rest, _, proto = spec.strip().partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp", "sctp"):
        raise InvalidPortSpec(spec, "invalid proto")
    parts = rest.rsplit(":", 2)
    ip, host, cont = "", "", parts[-1]
    if len(parts) == 2:
        host = parts[0]
    elif len(parts) == 3:
        ip, host = parts[0].strip("[]"), parts[1]
    if not re.fullmatch(r"\d+(-\d+)?", cont) or not re.fullmatch(r"(\d+(-\d+)?)?", host):
        raise InvalidPortSpec(spec)
    if ip:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidPortSpec(spec, "invalid IP address")
    c_start, c_end = _port_range(cont, spec)
    if not host:
        return [
            PortBinding(container_port=p, proto=proto, host_ip=ip)
            for p in range(c_start, c_end + 1)
        ]
    h_start, h_end = _port_range(host, spec)
    if c_start == c_end and h_start != h_end:
        return [
            PortBinding(
                container_port=c_start,
                proto=proto,
                host_ip=ip,
                host_port=h_start,
                host_port_end=h_end,
            )
        ]
    if h_end - h_start != c_end - c_start:
        raise InvalidPortSpec(spec, "port ranges don't match")
    return [
        PortBinding(container_port=c, proto=proto, host_ip=ip, host_port=h)
        for c, h in zip(range(c_start, c_end + 1), range(h_start, h_end + 1), strict=True)
    ]
