"""Netlink work for skiffd's bridge driver, through pyroute2: bridges and veth pairs.

Host-side operations run in the calling thread's network namespace (the
daemon's); container-side ones in a thread that has joined the container's
namespace (`netns.run_in_netns`). Nothing here reads /sys, which shows the
namespace of whoever mounted it rather than the caller's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from skiff.engine.network.netns import run_in_netns

ENOENT = 2
ENODEV = 19
EEXIST = 17


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """Make the bridge (if missing) with the gateway address, and bring it up."""
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
            idx = _index(ipr, name)
            assert idx is not None
        have = {
            (a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=2)
        }
        if (gateway, prefixlen) not in have:
            try:
                ipr.addr("add", index=idx, address=gateway, prefixlen=prefixlen)
            except NetlinkError as exc:
                if exc.code != EEXIST:
                    raise
        ipr.link("set", index=idx, state="up")


def delete_link(name: str) -> bool:
    with IPRoute() as ipr:
        idx = _index(ipr, name)
        if idx is None:
            return False
        try:
            ipr.link("del", index=idx)
        except NetlinkError as exc:
            if exc.code not in (ENODEV, ENOENT):
                raise
            return False
        return True


def link_exists(name: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, name) is not None


@dataclass(frozen=True, slots=True)
class HostLink:
    name: str
    kind: str
    master: str  # name of the bridge it is enslaved to, "" if none


def list_links() -> list[HostLink]:
    with IPRoute() as ipr:
        links = list(ipr.get_links())
        names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in links}
        out = []
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            kind = str(info.get_attr("IFLA_INFO_KIND")) if info is not None else ""
            master = link.get_attr("IFLA_MASTER")
            out.append(
                HostLink(
                    names[int(link["index"])], kind, names.get(int(master), "") if master else ""
                )
            )
        return out


def routes_in_use() -> list[str]:
    """IPv4 destinations of the daemon namespace's routes, to keep new subnets clear of."""
    with IPRoute() as ipr:
        out = []
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            if dst and r["dst_len"] > 0:
                out.append(f"{dst}/{r['dst_len']}")
        return out


def lo_up(netns_path: str) -> None:
    def inside() -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")

    run_in_netns(netns_path, inside)


def attach_veth(
    *,
    bridge: str,
    host_ifname: str,
    netns_path: str,
    ifname: str,
    ip: str,
    prefixlen: int,
    mac: str,
    gateway: str,
    mtu: int = 1500,
) -> None:
    """A veth pair: host_ifname on the bridge, the peer as ifname in the container.

    The peer is created under a temporary name straight inside the container's
    namespace, so an `eth0` of the daemon's own namespace is never in the way.
    gateway "" leaves the container without a default route (internal networks).
    """
    peer_tmp = "sk" + host_ifname[4:]
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        with IPRoute() as ipr:
            br = _index(ipr, bridge)
            if br is None:
                raise OSError(ENODEV, f"bridge {bridge} does not exist")
            ipr.link(
                "add",
                ifname=host_ifname,
                kind="veth",
                mtu=mtu,
                peer={"ifname": peer_tmp, "net_ns_fd": fd, "mtu": mtu},
            )
            idx = _index(ipr, host_ifname)
            assert idx is not None
            try:
                ipr.link("set", index=idx, master=br, state="up")
            except BaseException:
                ipr.link("del", index=idx)
                raise
    finally:
        os.close(fd)

    def inside() -> None:
        with IPRoute() as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            idx = _index(ipr, peer_tmp)
            assert idx is not None
            ipr.link("set", index=idx, ifname=ifname, address=mac)
            ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
            ipr.link("set", index=idx, state="up")
            if gateway:
                try:
                    ipr.route("add", dst="0.0.0.0/0", gateway=gateway)
                except NetlinkError as exc:
                    # a second network: the first one keeps the default route
                    if exc.code != EEXIST:
                        raise

    try:
        run_in_netns(netns_path, inside)
    except BaseException:
        delete_link(host_ifname)
        raise
