"""Docker's default IPAM for skiffd: subnets for networks, addresses for endpoints.

Pure logic over `model.Network`; the allocations live in the network record
(`Network.allocated`) and are persisted with it by `store`, so they survive a
daemon restart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from skiff.engine.network import errors
from skiff.engine.network.model import IPAMConfig, Network
from skiff.errors import InvalidArgument

GATEWAY = "gateway"


@dataclass(frozen=True, slots=True)
class AddressPool:
    """`--default-address-pool base=...,size=...`: networks of /size cut from base."""

    base: str
    size: int

    def candidates(self) -> Iterable[ipaddress.IPv4Network]:
        return ipaddress.IPv4Network(self.base).subnets(new_prefix=self.size)


#: Docker's defaults: 172.17-31.x.x/16, then 192.168.x.x/20.
DEFAULT_POOLS: tuple[AddressPool, ...] = (
    AddressPool("172.17.0.0/16", 16),
    AddressPool("172.18.0.0/15", 16),
    AddressPool("172.20.0.0/14", 16),
    AddressPool("172.24.0.0/13", 16),
    AddressPool("192.168.0.0/16", 20),
)


def parse_pool(text: str) -> AddressPool:
    """`base=10.10.0.0/16,size=24` as dockerd's --default-address-pool takes it."""
    fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    try:
        base = str(ipaddress.IPv4Network(fields["base"]))
        size = int(fields.get("size", "24"))
    except (KeyError, ValueError):
        raise InvalidArgument(f"invalid default address pool {text!r}")
    return AddressPool(base, size)


def _overlaps(net: ipaddress.IPv4Network, taken: Sequence[ipaddress.IPv4Network]) -> bool:
    return any(net.overlaps(t) for t in taken)


def plan_subnet(
    *,
    subnet: str | None,
    gateway: str | None,
    ip_range: str | None,
    taken: Sequence[ipaddress.IPv4Network],
    pools: Sequence[AddressPool] = DEFAULT_POOLS,
) -> IPAMConfig:
    """Choose or check a network's subnet, gateway and range against the ones taken."""
    if subnet:
        try:
            net = ipaddress.IPv4Network(subnet, strict=False)
        except ValueError:
            raise InvalidArgument(f"invalid subnet {subnet}")
        if _overlaps(net, taken):
            raise errors.PoolOverlap()
    else:
        if gateway or ip_range:
            raise InvalidArgument("gateway or ip-range given without a subnet")
        found = next(
            (c for pool in pools for c in pool.candidates() if not _overlaps(c, taken)), None
        )
        if found is None:
            raise errors.NoAvailablePool()
        net = found
    rng = ""
    if ip_range:
        r = ipaddress.IPv4Network(ip_range, strict=False)
        if not r.subnet_of(net):
            raise errors.RangeOutsideSubnet(ip_range)
        rng = str(r)
    if gateway:
        gw = ipaddress.IPv4Address(gateway)
        if gw not in net:
            raise errors.GatewayOutsideSubnet(gateway)
    else:
        gw = net.network_address + 1
    return IPAMConfig(subnet=str(net), gateway=str(gw), ip_range=rng)


def reserve_gateway(network: Network) -> None:
    for cfg in network.ipam:
        network.allocated[cfg.gateway] = GATEWAY


def allocate(network: Network, endpoint_id: str, requested: str = "") -> tuple[str, int]:
    """Take `requested`, or the lowest free address of the pool; return (ip, prefixlen)."""
    if not network.ipam:
        raise errors.NoAvailableAddress(network.name, network.id)
    if requested:
        addr = ipaddress.IPv4Address(requested)
        for cfg in network.ipam:
            net = cfg.network()
            if addr in net and addr not in (net.network_address, net.broadcast_address):
                if str(addr) in network.allocated:
                    raise errors.AddressInUse()
                network.allocated[str(addr)] = endpoint_id
                return str(addr), net.prefixlen
        raise errors.AddressOutsideSubnet(requested)
    for cfg in network.ipam:
        net = cfg.network()
        for addr in cfg.pool():
            if addr in (net.network_address, net.broadcast_address):
                continue
            if str(addr) not in network.allocated:
                network.allocated[str(addr)] = endpoint_id
                return str(addr), net.prefixlen
    raise errors.NoAvailableAddress(network.name, network.id)


def release(network: Network, endpoint_id: str) -> None:
    for addr in [a for a, owner in network.allocated.items() if owner == endpoint_id]:
        del network.allocated[addr]
