"""skiffd's network layer: the one object the engine calls for container networking.

`NetworkManager` owns the network store, IPAM, the bridges and veths
(`links`), the `ip skiff` nftables table (`nft`), the userland proxies and
the embedded DNS servers (on one `ServiceLoop`). Every change follows the
same shape: check, act on the kernel, save the store, re-render the rules.
Its methods are blocking and thread-safe; the engine calls them from a worker
thread. The manager works in the network namespace of the thread that
creates it (tests create it inside a namespace of their own).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from skiff.engine.network import dns, etcfiles, ipam, links, netns, nft, shapes
from skiff.engine.network import errors as neterr
from skiff.engine.network.model import (
    DRIVER_BRIDGE,
    DRIVER_HOST,
    DRIVER_NULL,
    OPT_BRIDGE_NAME,
    Endpoint,
    IPAMConfig,
    Network,
    PortBinding,
    mac_for_ip,
)
from skiff.engine.network.proxy import (
    ServiceLoop,
    TcpProxy,
    UdpProxy,
    bind_listener,
    ipv6_listenable,
)
from skiff.engine.network.store import NetworkStore
from skiff.errors import InvalidArgument

log = logging.getLogger(__name__)

PREDEFINED = ("bridge", "host", "none")
DEFAULT_BRIDGE_OPTIONS = {
    "com.docker.network.bridge.default_bridge": "true",
    "com.docker.network.bridge.enable_icc": "true",
    "com.docker.network.bridge.enable_ip_masquerade": "true",
    "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
    "com.docker.network.driver.mtu": "1500",
}


def _new_id() -> str:
    return secrets.token_hex(32)


def _now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond * 1000:09d}Z"


@dataclass(slots=True)
class _Names:
    """What the DNS servers read, rebuilt whole on each change (never locked)."""

    #: container id -> ids of its user-defined networks
    networks_of: dict[str, list[str]] = field(default_factory=dict)
    #: network id -> (network name, name -> addresses)
    records: dict[str, tuple[str, dict[str, list[str]]]] = field(default_factory=dict)
    #: address -> "container.network"
    reverse: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    stale_endpoints: int
    removed_links: int
    rules_applied: bool


class NetworkManager:
    def __init__(
        self,
        state_dir: str | os.PathLike[str],
        *,
        bridge_name: str = "skiff0",
        bip: str = "172.30.0.1/16",
        address_pools: Sequence[ipam.AddressPool] = ipam.DEFAULT_POOLS,
        host_resolv_conf: str = "/etc/resolv.conf",
        dns_upstreams: Sequence[tuple[str, int]] | None = None,
        userland_proxy: bool = True,
        nft_command: str = "nft",
        mtu: int = 1500,
        iptables: bool = True,
    ) -> None:
        self.store = NetworkStore(state_dir)
        self.bridge_name = bridge_name
        self.bip = ipaddress.IPv4Interface(bip)
        self.address_pools = list(address_pools)
        self.host_resolv_conf = host_resolv_conf
        self._dns_upstreams = list(dns_upstreams) if dns_upstreams is not None else None
        self.userland_proxy = userland_proxy
        self._v6: bool | None = None  # whether this namespace can listen on IPv6
        self.nft_command = nft_command
        self.mtu = mtu
        #: False (dockerd's --iptables=false): no `ip skiff` table at all
        self.iptables = iptables
        self._lock = threading.RLock()
        self._loop: ServiceLoop | None = None
        self._proxies: dict[tuple[str, str, int], TcpProxy | UdpProxy] = {}
        self._dns: dict[str, dns.DnsServer] = {}
        self._names = _Names()
        self._applied_rules: str | None = None
        self._forwarding = False
        self._stale_table = False

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> ReconcileReport:
        """Load the store, make the predefined networks, and bring the host in line."""
        with self._lock:
            self.store.load()
            self._loop = ServiceLoop()
            self._ensure_predefined()
            report = self.reconcile()
            for ep in list(self.store.endpoints.values()):
                self._start_proxies(ep, restoring=True)
            self._rebuild_names()
            for cid in {ep.container_id for ep in self.store.endpoints.values()}:
                self._sync_dns(cid)
            return report

    def close(self) -> None:
        """Stop proxies and DNS servers; rules and veths stay for running containers."""
        with self._lock:
            if self._loop is None:
                return
            for server in self._dns.values():
                with contextlib.suppress(Exception):
                    self._loop.call(server.stop())
            for proxy in self._proxies.values():
                with contextlib.suppress(Exception):
                    self._loop.call(proxy.stop())
            self._dns.clear()
            self._proxies.clear()
            self._loop.close()
            self._loop = None

    def __enter__(self) -> NetworkManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reconcile(self) -> ReconcileReport:
        """Drop endpoints whose namespace is gone, veths and rules the store does not know."""
        with self._lock:
            stale = 0
            for ep in list(self.store.endpoints.values()):
                if not _netns_alive(ep):
                    self._drop_endpoint(ep)
                    stale += 1
            for net in self.store.networks.values():
                if net.driver == DRIVER_BRIDGE:
                    cfg = net.ipam[0]
                    links.ensure_bridge(net.bridge, cfg.gateway, cfg.network().prefixlen, self.mtu)
            ours = {n.bridge for n in self.store.networks.values() if n.bridge}
            known = {ep.host_ifname for ep in self.store.endpoints.values()}
            removed = 0
            for link in links.list_links():
                stray = link.kind == "veth" and link.master in ours and link.name not in known
                if stray and links.delete_link(link.name):
                    removed += 1
            for ep in list(self.store.endpoints.values()):
                if ep.host_ifname and not links.link_exists(ep.host_ifname):
                    self._drop_endpoint(ep)
                    stale += 1
            self.store.save()
            self._applied_rules = None  # the table may have been changed behind our back
            self._apply_rules()
            return ReconcileReport(stale, removed, True)

    # ---------------------------------------------------------------- networks

    def create_network(
        self,
        name: str,
        *,
        driver: str = DRIVER_BRIDGE,
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        attachable: bool = False,
        enable_ipv6: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        ipam_options: dict[str, str] | None = None,
    ) -> Network:
        with self._lock:
            if driver != DRIVER_BRIDGE:
                raise neterr.Forbidden(
                    f'only one instance of "{driver}" network is allowed'
                    if driver in (DRIVER_HOST, DRIVER_NULL)
                    else f'plugin "{driver}" not found'
                )
            if any(n.name == name for n in self.store.networks.values()):
                raise neterr.NetworkExists(name)
            taken = [
                ipaddress.IPv4Network(c.subnet)
                for n in self.store.networks.values()
                for c in n.ipam
            ]
            if not subnet:
                ours = {ipaddress.IPv4Network(t) for t in map(str, taken)}
                taken += [
                    ipaddress.IPv4Network(r)
                    for r in links.routes_in_use()
                    if ipaddress.IPv4Network(r) not in ours
                ]
            cfg = ipam.plan_subnet(
                subnet=subnet,
                gateway=gateway,
                ip_range=ip_range,
                taken=taken,
                pools=self.address_pools,
            )
            net_id = _new_id()
            opts = dict(options or {})
            bridge = opts.get(OPT_BRIDGE_NAME) or f"br-{net_id[:12]}"
            if len(bridge) > 15:
                raise InvalidArgument(f"bridge name {bridge} is longer than 15 characters")
            if any(n.bridge == bridge for n in self.store.networks.values()):
                raise neterr.Forbidden(f"bridge name {bridge} already in use")
            net = Network(
                id=net_id,
                name=name,
                driver=DRIVER_BRIDGE,
                created=_now(),
                ipam=[cfg],
                user_subnet=bool(subnet),
                internal=internal,
                attachable=attachable,
                enable_ipv6=enable_ipv6,
                options=opts,
                labels=dict(labels or {}),
                ipam_options=None if ipam_options is None else dict(ipam_options),
                bridge=bridge,
            )
            ipam.reserve_gateway(net)
            links.ensure_bridge(bridge, cfg.gateway, cfg.network().prefixlen, self.mtu)
            self.store.networks[net.id] = net
            try:
                self.store.save()
                self._apply_rules()
            except BaseException:
                del self.store.networks[net.id]
                links.delete_link(bridge)
                raise
            return net

    def get_network(self, name_or_id: str) -> Network:
        with self._lock:
            nets = list(self.store.networks.values())
            for n in nets:
                if n.id == name_or_id:
                    return n
            for n in nets:
                if n.name == name_or_id:
                    return n
            by_prefix = [n for n in nets if name_or_id and n.id.startswith(name_or_id)]
            if len(by_prefix) == 1:
                return by_prefix[0]
            raise neterr.NetworkNotFound(name_or_id)

    def list_networks(self) -> list[Network]:
        with self._lock:
            return sorted(self.store.networks.values(), key=lambda n: n.created)

    def remove_network(self, name_or_id: str) -> None:
        with self._lock:
            net = self.get_network(name_or_id)
            if net.name in PREDEFINED and (net.default_bridge or net.driver != DRIVER_BRIDGE):
                raise neterr.PredefinedNetwork(net.name)
            if self.endpoints_of(net.id):
                raise neterr.NetworkInUse(net.name, net.id)
            del self.store.networks[net.id]
            self.store.save()
            links.delete_link(net.bridge)
            self._apply_rules()

    def prune_networks(self) -> list[str]:
        """Remove user-defined networks without endpoints; their names."""
        with self._lock:
            gone = []
            for net in list(self.store.networks.values()):
                if net.name in PREDEFINED and (net.default_bridge or net.driver != DRIVER_BRIDGE):
                    continue
                if not self.endpoints_of(net.id):
                    self.remove_network(net.id)
                    gone.append(net.name)
            return gone

    def endpoints_of(self, network_id: str) -> list[Endpoint]:
        with self._lock:
            return [e for e in self.store.endpoints.values() if e.network_id == network_id]

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        with self._lock:
            return [e for e in self.store.endpoints.values() if e.container_id == container_id]

    # ---------------------------------------------------------------- containers

    def attach(
        self,
        container_id: str,
        network: str,
        netns_path: str,
        *,
        name: str,
        ip: str = "",
        aliases: Sequence[str] = (),
        ports: Sequence[PortBinding] = (),
        dns_servers: Sequence[str] = (),
    ) -> Endpoint:
        """Connect a container's namespace to a network (docker run --network / connect).

        netns_path is /proc/PID/ns/net or a bind-mounted namespace file; it is
        recorded, with its inode, so a restarted daemon can tell whether the
        container still lives. ports are published on this endpoint.
        """
        with self._lock:
            net = self.get_network(network)
            name = name.lstrip("/")
            if any(e.container_id == container_id for e in self.endpoints_of(net.id)):
                raise neterr.AlreadyAttached(name, net.name)
            ep = Endpoint(
                id=_new_id(),
                network_id=net.id,
                container_id=container_id,
                container_name=name,
                ifname="",
                host_ifname="",
                netns_path=netns_path,
                netns_inode=netns.netns_inode(netns_path) if net.driver != DRIVER_HOST else 0,
                aliases=list(aliases),
                dns=[d for d in dns_servers if ":" not in d],
            )
            if net.driver != DRIVER_BRIDGE:
                # Docker ignores --ip and -p on the host and none networks
                if net.driver == DRIVER_NULL:
                    links.lo_up(netns_path)
                self.store.endpoints[ep.id] = ep
                self.store.save()
                return ep
            if ip:
                if net.default_bridge:
                    raise neterr.StaticIPNotSupported(
                        "user specified IP address is supported on user defined networks only"
                    )
                if not net.user_subnet:
                    raise neterr.StaticIPNotSupported(
                        "user specified IP address is supported only when connecting to "
                        "networks with user configured subnets"
                    )
            addr, prefixlen = ipam.allocate(net, ep.id, ip)
            used = sum(1 for e in self.container_endpoints(container_id) if e.ifname)
            ep.ifname = f"eth{used}"
            ep.host_ifname = "veth" + ep.id[:7]
            ep.ip, ep.prefixlen, ep.static_ip = addr, prefixlen, ip
            ep.gateway = "" if net.internal else net.ipam[0].gateway
            ep.mac = mac_for_ip(addr)
            sockets: dict[tuple[str, str, int], socket.socket] = {}
            try:
                ep.ports, sockets = self._allocate_ports(ep, ports)
                links.attach_veth(
                    bridge=net.bridge,
                    host_ifname=ep.host_ifname,
                    netns_path=netns_path,
                    ifname=ep.ifname,
                    ip=addr,
                    prefixlen=prefixlen,
                    mac=ep.mac,
                    gateway=ep.gateway,
                    mtu=self.mtu,
                )
            except BaseException:
                ipam.release(net, ep.id)
                for s in sockets.values():
                    s.close()
                raise
            self.store.endpoints[ep.id] = ep
            self.store.save()
            self._apply_rules()
            self._serve_proxies(ep, sockets)
            self._rebuild_names()
            self._sync_dns(container_id)
            return ep

    def detach(self, container_id: str, network: str) -> None:
        """Disconnect one network (docker network disconnect)."""
        with self._lock:
            net = self.get_network(network)
            eps = [e for e in self.endpoints_of(net.id) if e.container_id == container_id]
            if not eps:
                raise neterr.NotAttached(container_id, net.name)
            for ep in eps:
                self._drop_endpoint(ep)
            self.store.save()
            self._apply_rules()
            self._rebuild_names()
            self._sync_dns(container_id)

    def release_container(self, container_id: str) -> None:
        """Everything a stopped container held: endpoints, addresses, ports, DNS."""
        with self._lock:
            eps = self.container_endpoints(container_id)
            if not eps:
                return
            for ep in eps:
                self._drop_endpoint(ep)
            self.store.save()
            self._apply_rules()
            self._rebuild_names()
            self._sync_dns(container_id)

    def rename_container(self, container_id: str, name: str) -> None:
        """docker rename: the embedded DNS answers the new name (and no longer the old)."""
        with self._lock:
            eps = self.container_endpoints(container_id)
            for ep in eps:
                ep.container_name = name.lstrip("/")
            if eps:
                self.store.save()
                self._rebuild_names()

    # ---------------------------------------------------------------- Docker shapes

    def inspect_network(self, name_or_id: str) -> dict[str, Any]:
        with self._lock:
            net = self.get_network(name_or_id)
            return shapes.network_json(net, self.endpoints_of(net.id))

    def list_networks_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [shapes.network_json(n, self.endpoints_of(n.id)) for n in self.list_networks()]

    def network_settings(self, container_id: str) -> dict[str, Any]:
        """The network part of a container's NetworkSettings (Networks, Ports, legacy fields)."""
        with self._lock:
            eps = self.container_endpoints(container_id)
            networks = {}
            out: dict[str, Any] = {}
            for ep in eps:
                net = self.store.networks[ep.network_id]
                networks[net.name] = shapes.endpoint_settings(net, ep)
                if net.default_bridge:
                    out.update(
                        EndpointID=ep.id,
                        Gateway=ep.gateway,
                        IPAddress=ep.ip,
                        IPPrefixLen=ep.prefixlen,
                        MacAddress=ep.mac,
                        GlobalIPv6Address="",
                        GlobalIPv6PrefixLen=0,
                        IPv6Gateway="",
                    )
            out["Ports"] = shapes.ports_json(eps)
            out["Networks"] = networks
            return out

    def published_ports(self, container_id: str) -> list[PortBinding]:
        """What `docker port` lists."""
        return [p for ep in self.container_endpoints(container_id) for p in ep.ports]

    # ---------------------------------------------------------------- /etc files

    def hosts_file(
        self,
        container_id: str,
        hostname: str,
        *,
        domainname: str = "",
        extra_hosts: Sequence[tuple[str, str]] = (),
    ) -> str:
        addrs = [ep.ip for ep in self.container_endpoints(container_id) if ep.ip]
        return etcfiles.hosts_file(
            hostname=hostname, domainname=domainname, addresses=addrs, extra_hosts=extra_hosts
        )

    def resolv_conf(
        self,
        container_id: str,
        *,
        dns_servers: Sequence[str] = (),
        dns_search: Sequence[str] = (),
        dns_options: Sequence[str] = (),
    ) -> str:
        with self._lock:
            user = any(
                self._is_user_network(self.store.networks[ep.network_id])
                for ep in self.container_endpoints(container_id)
            )
            host = self._read_host_resolv()
            if any(
                self.store.networks[ep.network_id].driver == DRIVER_HOST
                for ep in self.container_endpoints(container_id)
            ):
                return host
        return etcfiles.resolv_conf(
            host,
            internal_resolver=user,
            dns=dns_servers,
            dns_search=dns_search,
            dns_options=dns_options,
            host_path=self.host_resolv_conf,
        )

    # ---------------------------------------------------------------- internals

    @property
    def has_default_bridge(self) -> bool:
        """False with dockerd's `--bridge=none`: no default bridge network at all."""
        return self.bridge_name != "none"

    def _ensure_predefined(self) -> None:
        if not self.has_default_bridge:
            for net in list(self.store.networks.values()):
                if net.default_bridge and not self.endpoints_of(net.id):
                    del self.store.networks[net.id]
                    links.delete_link(net.bridge)
                    self._stale_table = True
        names = {n.name for n in self.store.networks.values()}
        if "bridge" not in names and self.has_default_bridge:
            cfg = IPAMConfig(subnet=str(self.bip.network), gateway=str(self.bip.ip))
            net = Network(
                id=_new_id(),
                name="bridge",
                driver=DRIVER_BRIDGE,
                created=_now(),
                ipam=[cfg],
                default_bridge=True,
                options={**DEFAULT_BRIDGE_OPTIONS, OPT_BRIDGE_NAME: self.bridge_name},
                bridge=self.bridge_name,
            )
            ipam.reserve_gateway(net)
            self.store.networks[net.id] = net
        for name, driver in (("host", DRIVER_HOST), ("none", DRIVER_NULL)):
            if name not in names:
                net = Network(id=_new_id(), name=name, driver=driver, created=_now())
                self.store.networks[net.id] = net
        self.store.save()

    @staticmethod
    def _is_user_network(net: Network) -> bool:
        return net.driver == DRIVER_BRIDGE and not net.default_bridge

    def _read_host_resolv(self) -> str:
        try:
            return Path(self.host_resolv_conf).read_text()
        except OSError:
            return ""

    def _upstreams(self) -> list[tuple[str, int]]:
        if self._dns_upstreams is not None:
            return self._dns_upstreams
        servers, _, _ = dns.parse_resolv_conf(self._read_host_resolv())
        return [(s, 53) for s in servers if ":" not in s]

    def _drop_endpoint(self, ep: Endpoint) -> None:
        for p in ep.ports:
            proxy = self._proxies.pop((p.proto, p.bind_ip, p.host_port), None)
            if proxy is not None and self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.call(proxy.stop())
        if ep.host_ifname:
            links.delete_link(ep.host_ifname)
        net = self.store.networks.get(ep.network_id)
        if net is not None:
            ipam.release(net, ep.id)
        self.store.endpoints.pop(ep.id, None)

    def _allocated_ports(self) -> set[tuple[str, str, int]]:
        return {
            (p.proto, p.bind_ip, p.host_port)
            for e in self.store.endpoints.values()
            for p in e.ports
        }

    def _allocate_ports(
        self, ep: Endpoint, wanted: Sequence[PortBinding]
    ) -> tuple[list[PortBinding], dict[tuple[str, str, int], socket.socket]]:
        taken = self._allocated_ports()
        chosen: list[PortBinding] = []
        sockets: dict[tuple[str, str, int], socket.socket] = {}
        # As dockerd: a port without a host address is published on 0.0.0.0 and, where
        # the namespace can listen on IPv6, on [::] too (through the proxy only: the
        # container has no IPv6 address for a rule to reach).
        also_v6 = self.userland_proxy and self._ipv6_listenable()

        def clash(proto: str, ip: str, port: int) -> bool:
            v6 = ":" in ip
            wildcard = "::" if v6 else "0.0.0.0"
            return any(
                t[0] == proto
                and t[2] == port
                and (":" in t[1]) == v6
                and (ip == t[1] or wildcard in (ip, t[1]))
                for t in taken
            )

        try:
            for want in wanted:
                if want.proto not in ("tcp", "udp"):
                    raise InvalidArgument(f"unsupported protocol {want.proto}")
                ips = [want.bind_ip] + (["::"] if also_v6 and not want.host_ip else [])
                if want.host_port and not want.host_port_end:
                    candidates: Iterable[int] = [want.host_port]
                elif want.host_port:
                    candidates = range(want.host_port, want.host_port_end + 1)
                else:
                    candidates = range(*_ephemeral_range())
                explicit = bool(want.host_port and not want.host_port_end)
                for port in candidates:
                    busy = next((ip for ip in ips if clash(want.proto, ip, port)), None)
                    if busy is not None:
                        if explicit:
                            raise neterr.PortAllocated(ep.container_name, ep.id, busy, port)
                        continue
                    if self.userland_proxy and not self._bind_all(
                        sockets, ep, want.proto, ips, port, explicit
                    ):
                        continue
                    for ip in ips:
                        host_ip = want.host_ip if ip == want.bind_ip else ip
                        chosen.append(
                            replace(want, host_ip=host_ip, host_port=port, host_port_end=0)
                        )
                        taken.add((want.proto, ip, port))
                    break
                else:
                    raise neterr.PortAllocated(
                        ep.container_name, ep.id, want.bind_ip, want.host_port or 0
                    )
        except BaseException:
            for s in sockets.values():
                s.close()
            raise
        return chosen, sockets

    def _bind_all(
        self,
        sockets: dict[tuple[str, str, int], socket.socket],
        ep: Endpoint,
        proto: str,
        ips: list[str],
        port: int,
        explicit: bool,
    ) -> bool:
        """The proxy's listeners on every address of one binding, or none of them: a
        port chosen from a range must be free on all (dockerd gives 0.0.0.0 and [::]
        the same port)."""
        got: list[tuple[str, str, int]] = []
        for ip in ips:
            try:
                sockets[(proto, ip, port)] = bind_listener(proto, ip, port)
            except OSError:
                for key in got:
                    sockets.pop(key).close()
                if explicit:
                    raise neterr.ProxyBindFailed(ep.container_name, ep.id, proto, ip, port)
                return False
            got.append((proto, ip, port))
        return True

    def _ipv6_listenable(self) -> bool:
        if self._v6 is None:
            self._v6 = ipv6_listenable()
        return self._v6

    def _serve_proxies(
        self, ep: Endpoint, sockets: dict[tuple[str, str, int], socket.socket]
    ) -> None:
        assert self._loop is not None
        for p in ep.ports:
            key = (p.proto, p.bind_ip, p.host_port)
            sock = sockets.get(key)
            if sock is None:
                continue
            target = (ep.ip, p.container_port)
            proxy: TcpProxy | UdpProxy = (
                TcpProxy(sock, target) if p.proto == "tcp" else UdpProxy(sock, target)
            )
            self._loop.call(proxy.start())
            self._proxies[key] = proxy

    def _start_proxies(self, ep: Endpoint, *, restoring: bool) -> None:
        if not self.userland_proxy:
            return
        sockets = {}
        for p in ep.ports:
            key = (p.proto, p.bind_ip, p.host_port)
            if key in self._proxies:
                continue
            try:
                sockets[key] = bind_listener(p.proto, p.bind_ip, p.host_port)
            except OSError as exc:
                log.warning("cannot restore proxy for %s/%s: %s", p.host_port, p.proto, exc)
        self._serve_proxies(ep, sockets)

    def _apply_rules(self) -> None:
        bridges = [
            nft.BridgeRules(n.bridge, n.ipam[0].subnet, n.internal)
            for n in self.store.networks.values()
            if n.driver == DRIVER_BRIDGE
        ]
        ports = []
        for ep in self.store.endpoints.values():
            net = self.store.networks.get(ep.network_id)
            if net is None or not ep.ip:
                continue
            for p in ep.ports:
                if ":" in p.bind_ip:
                    continue  # an IPv6 listener is the proxy's alone (table ip skiff)
                ports.append(
                    nft.PortRule(
                        p.proto, p.host_ip, p.host_port, ep.ip, p.container_port, net.bridge
                    )
                )
        if bridges and not self._forwarding:
            # only once a bridge exists: a daemon without bridges leaves the host's sysctls be
            _set_sysctl("net/ipv4/ip_forward", "1")
            self._forwarding = True
        if not self.iptables:
            return
        if not self.userland_proxy:
            for b in bridges:
                # DNAT of a loopback destination to a container (no proxy to serve it)
                _set_sysctl(f"net/ipv4/conf/{b.bridge}/route_localnet", "1")
        if not bridges and not ports:
            # nothing to program: no table at all (a daemon run with --bridge=none in the
            # host's namespace adds nothing to the host's ruleset)
            # Only a table this daemon wrote (now, or before a restart that dropped its
            # bridges) is removed: another daemon in the same namespace may own one.
            ours = self._applied_rules or (self._applied_rules is None and self._stale_table)
            if ours and nft.list_table(self.nft_command):
                nft.remove(self.nft_command)
            self._applied_rules = ""
            self._stale_table = False
            return
        text = nft.render(bridges, ports, hairpin_proxy=self.userland_proxy)
        # an nft transaction costs ~20 ms; most attaches (no ports) change nothing
        if text != self._applied_rules:
            nft.apply(text, self.nft_command)
            self._applied_rules = text

    def _rebuild_names(self) -> None:
        names = _Names()
        for ep in self.store.endpoints.values():
            net = self.store.networks.get(ep.network_id)
            if net is None or not self._is_user_network(net) or not ep.ip:
                continue
            names.networks_of.setdefault(ep.container_id, []).append(net.id)
            _, recs = names.records.setdefault(net.id, (net.name, {}))
            for n in {ep.container_name, ep.container_id[:12], *ep.aliases}:
                recs.setdefault(n.lower(), []).append(ep.ip)
            names.reverse[ep.ip] = f"{ep.container_name}.{net.name}"
        self._names = names

    def _lookup_for(self, container_id: str) -> dns.LookupFn:
        def lookup(qname: str) -> list[str] | None:
            names = self._names
            found: list[str] = []
            known = False
            for net_id in names.networks_of.get(container_id, []):
                net_name, recs = names.records.get(net_id, ("", {}))
                short = qname
                if qname.endswith("." + net_name.lower()):
                    short = qname[: -len(net_name) - 1]
                if short in recs:
                    known = True
                    found += [ip for ip in recs[short] if ip not in found]
            return found if known else None

        return lookup

    def _reverse_for(self, container_id: str) -> dns.ReverseFn:
        def reverse(ip: str) -> str | None:
            return self._names.reverse.get(ip)

        return reverse

    def _sync_dns(self, container_id: str) -> None:
        """Run a DNS server in the container's namespace iff it is on a user network."""
        assert self._loop is not None
        user_eps = [
            ep
            for ep in self.container_endpoints(container_id)
            if self._is_user_network(self.store.networks[ep.network_id])
        ]
        server = self._dns.get(container_id)
        if user_eps and server is None:
            path = user_eps[0].netns_path
            try:
                udp, tcp = netns.run_in_netns(path, dns.open_sockets)
            except OSError as exc:
                log.warning("embedded DNS for %s: %s", container_id[:12], exc)
                return
            # the container's --dns servers when it has some (Docker's ExtServers), else the host's
            own = [(d, 53) for ep in user_eps for d in ep.dns]
            resolver = dns.Resolver(
                self._lookup_for(container_id),
                self._reverse_for(container_id),
                own or self._upstreams(),
            )
            server = dns.DnsServer(resolver, udp, tcp)
            self._loop.call(server.start())
            self._dns[container_id] = server
        elif not user_eps and server is not None:
            self._loop.call(server.stop())
            del self._dns[container_id]


def _netns_alive(ep: Endpoint) -> bool:
    if not ep.netns_inode:
        return True
    try:
        return netns.netns_inode(ep.netns_path) == ep.netns_inode
    except OSError:
        return False


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi) + 1
    except (OSError, ValueError):
        return 49153, 65536


def _set_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key
    try:
        if path.read_text().strip() != value:
            path.write_text(value)
    except OSError as exc:
        log.warning("sysctl %s: %s", key, exc)
