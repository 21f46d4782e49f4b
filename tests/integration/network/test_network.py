"""The network layer for real: bridges, veths, DNS, published ports, restart.

All inside namespaces each test creates (see conftest.py); no packet leaves them.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest
from netlib_helpers import BUSYBOX, Container, Host, tcp_exchange, udp_exchange

from skiff.engine.network import PortBinding, dns, errors, nft, parse_publish


def _query(c: Container, name: str, qtype: int = dns.TYPE_A) -> tuple[int, list[str]]:
    def ask() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(3)
            s.sendto(dns.build_query(0x4242, name, qtype), (dns.DNS_IP, 53))
            return s.recv(4096)

    rcode, answers = dns.parse_answer(c.inside(ask))  # type: ignore[arg-type]
    return rcode, [socket.inet_ntoa(rd) for t, rd in answers if t == dns.TYPE_A]


def test_two_containers_on_a_user_network(host: Host) -> None:
    mgr = host.manager()
    net = mgr.create_network("n1", subnet="10.77.0.0/24", labels={"a": "b"})
    a, b = host.container(), host.container()
    ea = mgr.attach(a.id, "n1", a.netns, name="/alpha")
    eb = mgr.attach(b.id, net.id[:10], b.netns, name="beta", aliases=["db"])
    assert (ea.ip, eb.ip) == ("10.77.0.2", "10.77.0.3")
    assert ea.mac == "02:42:0a:4d:00:02"
    link = a.run("ip", "-o", "link", "show", "eth0").stdout
    assert "02:42:0a:4d:00:02" in link and "UP" in link
    assert "default via 10.77.0.1 dev eth0" in a.run("ip", "route").stdout
    assert a.ping(eb.ip) and b.ping(ea.ip)
    assert a.ping("127.0.0.1"), "lo is up"

    # names, aliases, short ids and name.network on the embedded server
    assert _query(a, "beta") == (0, ["10.77.0.3"])
    assert _query(a, "DB") == (0, ["10.77.0.3"])
    assert _query(a, b.id[:12]) == (0, ["10.77.0.3"])
    assert _query(b, "alpha.n1") == (0, ["10.77.0.2"])
    assert _query(b, "alpha", dns.TYPE_AAAA) == (0, [])
    # other names go to the host's resolver (a fake one on the test's 127.0.0.1)
    assert _query(a, "example.org") == (0, ["10.1.2.3"])
    # and busybox's resolver, as a container's libc would ask
    out = a.run(BUSYBOX, "nslookup", "beta", dns.DNS_IP).stdout
    assert "10.77.0.3" in out, out

    # TCP between them, by name resolved through the embedded server
    server = b.serve_echo("tcp", 7000)
    try:
        reply = tcp_exchange(a.connect(_query(a, "db")[1][0], 7000), b"hi")
        assert reply == b"10.77.0.2 hi"
    finally:
        server.close()

    resolv = mgr.resolv_conf(a.id)
    assert "nameserver 127.0.0.11\n" in resolv and "options ndots:0" in resolv
    assert "ExtServers: [host(127.0.0.1), 192.0.2.53]" in resolv
    hosts = mgr.hosts_file(a.id, a.id[:12])
    assert hosts.endswith(f"10.77.0.2\t{a.id[:12]}\n")

    mgr.detach(b.id, "n1")
    assert not a.ping(eb.ip)
    assert _query(a, "beta") == (0, ["10.1.2.3"]), "gone from DNS, so forwarded"
    assert "veth" not in subprocess.run(
        ["ip", "-o", "link"], capture_output=True, text=True
    ).stdout.replace(ea.host_ifname, "")


def test_default_bridge_has_no_embedded_dns(host: Host) -> None:
    mgr = host.manager()
    c = host.container()
    ep = mgr.attach(c.id, "bridge", c.netns, name="c")
    assert ep.ip == "172.30.0.2" and ep.gateway == "172.30.0.1"
    resolv = mgr.resolv_conf(c.id)
    assert "nameserver 192.0.2.53\n" in resolv and "127.0.0" not in resolv.split("#")[1]
    with pytest.raises(errors.AddressOutsideSubnet.__mro__[1]):
        mgr.attach(host.container().id, "bridge", c.netns, name="d", ip="172.30.0.9")
    settings = mgr.network_settings(c.id)
    assert settings["IPAddress"] == "172.30.0.2"
    assert settings["Networks"]["bridge"]["MacAddress"] == "02:42:ac:1e:00:02"


def test_networks_are_isolated(host: Host) -> None:
    mgr = host.manager()
    mgr.create_network("n1", subnet="10.77.1.0/24")
    mgr.create_network("n2", subnet="10.77.2.0/24")
    a, a2, b = host.container(), host.container(), host.container()
    mgr.attach(a.id, "n1", a.netns, name="a")
    ea2 = mgr.attach(a2.id, "n1", a2.netns, name="a2")
    eb = mgr.attach(b.id, "n2", b.netns, name="b")
    assert a.ping(ea2.ip), "same network reaches"
    assert not a.ping(eb.ip)
    assert not b.ping(ea2.ip)
    assert _query(a, "b") == (0, ["10.1.2.3"]), "n2's names are not n1's"


def test_masquerade_and_internal(host: Host, outside: Container) -> None:
    mgr = host.manager()
    mgr.create_network("pub", subnet="10.77.3.0/24")
    mgr.create_network("int", subnet="10.77.4.0/24", internal=True)
    p, i = host.container(), host.container()
    mgr.attach(p.id, "pub", p.netns, name="p")
    mgr.attach(i.id, "int", i.netns, name="i")
    server = outside.serve_echo("tcp", 8000)
    try:
        assert tcp_exchange(p.connect("10.99.0.2", 8000), b"x") == b"10.99.0.1 x"
        with pytest.raises(OSError):
            i.connect("10.99.0.2", 8000, timeout=1)
        assert not i.ping("10.99.0.2")
    finally:
        server.close()
    assert "default" not in i.run("ip", "route").stdout
    rules = nft.list_table()
    assert "ip saddr 10.77.3.0/24" in rules and "10.77.4.0/24" not in rules


def test_published_ports_tcp_udp(host: Host, outside: Container) -> None:
    mgr = host.manager()
    mgr.create_network("web", subnet="10.77.5.0/24")
    c = host.container()
    ports = (
        parse_publish("18080:80")
        + parse_publish("19090:90/udp")
        + parse_publish("127.0.0.1::81")
        + parse_publish("[::1]:18085:80")
    )
    ep = mgr.attach(c.id, "web", c.netns, name="web1", ports=ports)
    eph = next(p for p in ep.ports if p.container_port == 81)
    assert eph.host_port >= 1024 and eph.host_ip == "127.0.0.1"
    tcp80, udp90, tcp81 = c.serve_echo("tcp", 80), c.serve_echo("udp", 90), c.serve_echo("tcp", 81)
    try:
        # loopback: the userland proxy, so the container sees the gateway
        reply = tcp_exchange(socket.create_connection(("127.0.0.1", 18080), 2), b"t")
        assert reply == b"10.77.5.1 t"
        assert udp_exchange("127.0.0.1", 19090, b"u") == b"10.77.5.1 u"
        assert tcp_exchange(
            socket.create_connection(("127.0.0.1", eph.host_port), 2), b"e"
        ).endswith(b" e")
        # IPv6 loopback: [::] beside 0.0.0.0 (as dockerd, where ::1 exists), and the
        # explicit [::1]:18085; both proxied to the container's IPv4 address
        assert tcp_exchange(socket.create_connection(("::1", 18080), 2), b"6") == b"10.77.5.1 6"
        assert udp_exchange("::1", 19090, b"w") == b"10.77.5.1 w"
        assert tcp_exchange(socket.create_connection(("::1", 18085), 2), b"x") == b"10.77.5.1 x"
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 18085), 1)
        with pytest.raises(OSError):
            socket.create_connection(("::1", eph.host_port), 1)  # 127.0.0.1 only
        # from another machine: nftables DNAT, so the container sees the client
        assert tcp_exchange(outside.connect("10.99.0.1", 18080), b"d") == b"10.99.0.2 d"

        def udp_from_outside() -> bytes:
            return udp_exchange("10.99.0.1", 19090, b"v")

        assert outside.inside(udp_from_outside) == b"10.99.0.2 v"
        # 127.0.0.1::81 is not published on other addresses
        with pytest.raises(OSError):
            outside.connect("10.99.0.1", eph.host_port, timeout=1)

        other = host.container()
        with pytest.raises(errors.PortAllocated) as exc:
            mgr.attach(other.id, "web", other.netns, name="web2", ports=parse_publish("18080:80"))
        assert str(exc.value).endswith("Bind for 0.0.0.0:18080 failed: port is already allocated")
        assert exc.value.http_status == 500
        assert not mgr.container_endpoints(other.id), "the failed attach left nothing"

        settings = mgr.network_settings(c.id)
        assert settings["Ports"]["80/tcp"] == [
            {"HostIp": "0.0.0.0", "HostPort": "18080"},
            {"HostIp": "::", "HostPort": "18080"},
            {"HostIp": "::1", "HostPort": "18085"},
        ]
        assert settings["Ports"]["90/udp"] == [
            {"HostIp": "0.0.0.0", "HostPort": "19090"},
            {"HostIp": "::", "HostPort": "19090"},
        ]
        assert settings["Ports"]["81/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(eph.host_port)}
        ]
        assert "18085" not in nft.list_table()  # an IPv6 binding has no (ip family) rule

        mgr.release_container(c.id)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 18080), 1)
        assert "dport 18080" not in nft.list_table()
        assert (
            subprocess.run(["ip", "link", "show", ep.host_ifname], capture_output=True).returncode
            != 0
        )
        # the port is free again
        ep2 = mgr.attach(other.id, "web", other.netns, name="web2", ports=parse_publish("18080:80"))
        assert ep2.ports[0].host_port == 18080
    finally:
        for s in (tcp80, udp90, tcp81):
            s.close()


def test_port_ranges(host: Host) -> None:
    mgr = host.manager()
    c = host.container()
    ports = parse_publish("18100-18101:80-81") + parse_publish("18200-18210:82")
    ep = mgr.attach(c.id, "bridge", c.netns, name="r", ports=ports)
    # each on 0.0.0.0 and then [::], the same port for both (as dockerd)
    assert [(p.bind_ip, p.host_port, p.container_port) for p in ep.ports] == [
        ("0.0.0.0", 18100, 80),
        ("::", 18100, 80),
        ("0.0.0.0", 18101, 81),
        ("::", 18101, 81),
        ("0.0.0.0", 18200, 82),
        ("::", 18200, 82),
    ]
    d = host.container()
    ep2 = mgr.attach(d.id, "bridge", d.netns, name="r2", ports=parse_publish("18200-18210:82"))
    assert ep2.ports[0].host_port == 18201
    servers = [c.serve_echo("tcp", 81), d.serve_echo("tcp", 82)]
    try:
        assert (
            tcp_exchange(socket.create_connection(("127.0.0.1", 18101), 2), b"a") == b"172.30.0.1 a"
        )
        assert (
            tcp_exchange(socket.create_connection(("127.0.0.1", 18201), 2), b"b") == b"172.30.0.1 b"
        )
    finally:
        for s in servers:
            s.close()


def test_restart_keeps_state_and_reconcile_rebuilds(host: Host) -> None:
    mgr = host.manager()
    mgr.create_network("keep", subnet="10.77.6.0/24")
    a, gone = host.container(), host.container()
    ea = mgr.attach(a.id, "keep", a.netns, name="a", ports=parse_publish("18300:80"))
    eg = mgr.attach(gone.id, "keep", gone.netns, name="gone")
    net_id = mgr.get_network("keep").id
    mgr.close()  # the daemon goes away; containers and rules stay
    assert "dport 18300" in nft.list_table()

    # while it is down: the table is lost, a stray veth appears, a container dies
    subprocess.run(["nft", "delete", "table", "ip", "skiff"], check=True)
    bridge = f"br-{net_id[:12]}"
    subprocess.run(
        ["ip", "link", "add", "vethstray", "type", "veth", "peer", "name", "vethstray1"], check=True
    )
    subprocess.run(["ip", "link", "set", "vethstray", "master", bridge], check=True)
    gone.proc.kill()
    gone.proc.wait()

    mgr2 = host.manager()
    report = host.managers[-1].reconcile()  # idempotent after start's own reconcile
    assert report.removed_links == 0 and report.stale_endpoints == 0
    state = json.loads((host.state_dir / "network.json").read_text())
    assert [e["container_id"] for e in state["endpoints"]] == [a.id]
    assert (
        "vethstray"
        not in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    )
    assert "dport 18300 dnat to 10.77.6.2:80" in nft.list_table()
    net = mgr2.get_network("keep")
    assert eg.ip not in net.allocated and net.allocated[ea.ip] == ea.id
    # the freed address is reused, the kept one is not handed out twice
    b = host.container()
    assert mgr2.attach(b.id, "keep", b.netns, name="b").ip == eg.ip
    server = a.serve_echo("tcp", 80)
    try:
        assert (
            tcp_exchange(socket.create_connection(("127.0.0.1", 18300), 2), b"r") == b"10.77.6.1 r"
        )
        assert _query(b, "a") == (0, [ea.ip]), "DNS is served again after the restart"
    finally:
        server.close()


def test_errors_as_docker_words_them(host: Host) -> None:
    mgr = host.manager()
    n = mgr.create_network("e1", subnet="10.77.7.0/24")
    with pytest.raises(errors.PoolOverlap) as overlap:
        mgr.create_network("e2", subnet="10.77.7.128/25")
    assert (str(overlap.value), overlap.value.http_status) == (
        "Pool overlaps with other one on this address space",
        403,
    )
    with pytest.raises(errors.PoolOverlap):
        mgr.create_network("e3", subnet="172.30.5.0/24")
    with pytest.raises(errors.NetworkExists):
        mgr.create_network("e1")
    with pytest.raises(errors.GatewayOutsideSubnet):
        mgr.create_network("e4", subnet="10.77.8.0/24", gateway="10.77.9.1")
    with pytest.raises(errors.RangeOutsideSubnet):
        mgr.create_network("e5", subnet="10.77.8.0/24", ip_range="10.77.9.0/28")
    c = host.container()
    with pytest.raises(errors.AddressOutsideSubnet) as outside:
        mgr.attach(c.id, "e1", c.netns, name="c", ip="10.0.0.5")
    assert str(outside.value) == (
        "invalid address 10.0.0.5: It does not belong to any of this network's subnets"
    )
    mgr.attach(c.id, "e1", c.netns, name="c", ip="10.77.7.50")
    d = host.container()
    with pytest.raises(errors.AddressInUse):
        mgr.attach(d.id, "e1", d.netns, name="d", ip="10.77.7.50")
    with pytest.raises(errors.NetworkInUse) as in_use:
        mgr.remove_network("e1")
    assert str(in_use.value) == (
        f"error while removing network: network e1 id {n.id} has active endpoints"
    )
    with pytest.raises(errors.Forbidden, match="bridge is a pre-defined network"):
        mgr.remove_network("bridge")
    with pytest.raises(errors.NetworkNotFound, match="network nope not found"):
        mgr.get_network("nope")
    mgr.release_container(c.id)
    mgr.remove_network("e1")
    assert subprocess.run(["ip", "link", "show", n.bridge], capture_output=True).returncode != 0


def test_inspect_shapes_and_user_bridge_name(host: Host) -> None:
    mgr = host.manager()
    mgr.create_network(
        "shaped",
        subnet="10.77.10.0/24",
        gateway="10.77.10.254",
        ip_range="10.77.10.128/25",
        labels={"team": "net"},
        options={"com.docker.network.bridge.name": "skshaped0"},
    )
    c = host.container()
    ep = mgr.attach(c.id, "shaped", c.netns, name="c1", aliases=["web"])
    assert ep.ip == "10.77.10.128" or ep.ip == "10.77.10.129"
    doc = mgr.inspect_network("shaped")
    assert len(doc["Id"]) == 64 and int(doc["Id"], 16) >= 0
    assert doc["Scope"] == "local" and doc["Driver"] == "bridge"
    assert doc["IPAM"]["Config"] == [
        {"Subnet": "10.77.10.0/24", "Gateway": "10.77.10.254", "IPRange": "10.77.10.128/25"}
    ]
    assert doc["Containers"][c.id] == {
        "Name": "c1",
        "EndpointID": ep.id,
        "MacAddress": ep.mac,
        "IPv4Address": f"{ep.ip}/24",
        "IPv6Address": "",
    }
    assert doc["Labels"] == {"team": "net"} and doc["Internal"] is False
    assert subprocess.run(["ip", "link", "show", "skshaped0"], capture_output=True).returncode == 0
    names = [n["Name"] for n in mgr.list_networks_json()]
    assert names[:3] == ["bridge", "host", "none"] and "shaped" in names
    entry = mgr.network_settings(c.id)["Networks"]["shaped"]
    assert entry["Aliases"] == ["web"] and entry["Gateway"] == "10.77.10.254"
    assert entry["DNSNames"] == ["c1", c.id[:12], "web"]


def test_none_and_auto_subnets(host: Host) -> None:
    mgr = host.manager()
    c = host.container()
    mgr.attach(c.id, "none", c.netns, name="n")
    out = c.run("ip", "-o", "link").stdout
    assert "lo:" in out and "UP" in out and "eth0" not in out
    first = mgr.create_network("auto1")
    second = mgr.create_network("auto2")
    assert first.ipam[0].subnet == "172.17.0.0/16"
    assert second.ipam[0].subnet == "172.18.0.0/16"
    assert mgr.prune_networks() == ["auto1", "auto2"]


def test_bind_mounted_namespace_and_dns_over_tcp(host: Host, tmp_path: Path) -> None:
    from skiff.engine.network import create_netns, remove_netns

    mgr = host.manager()
    mgr.create_network("files", subnet="10.77.11.0/24")
    path = str(tmp_path / "ns1")
    inode = create_netns(path)
    try:
        assert os.stat(path).st_ino == inode != os.stat("/proc/thread-self/ns/net").st_ino
        ep = mgr.attach("f" * 64, "files", path, name="filed")
        other = host.container()
        mgr.attach(other.id, "files", other.netns, name="other")
        assert other.ping(ep.ip)

        def ask_tcp() -> bytes:
            q = dns.build_query(9, "filed")
            with socket.create_connection((dns.DNS_IP, 53), 2) as s:
                s.sendall(struct.pack("!H", len(q)) + q)
                (n,) = struct.unpack("!H", s.recv(2))
                return s.recv(n)

        rcode, answers = dns.parse_answer(other.inside(ask_tcp))  # type: ignore[arg-type]
        assert (rcode, answers) == (0, [(dns.TYPE_A, socket.inet_aton(ep.ip))])
        mgr.release_container("f" * 64)
    finally:
        remove_netns(path)
    assert not os.path.exists(path)


def test_no_ipv6_listener_where_the_namespace_has_no_ipv6(host: Host) -> None:
    """As dockerd (libnetwork's IsV6Listenable): no ::1, no [::] binding."""
    with open("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "w") as f:
        f.write("1")  # the test namespace's own lo: ::1 goes
    mgr = host.manager()
    c = host.container()
    ep = mgr.attach(c.id, "bridge", c.netns, name="v4only", ports=parse_publish("18400:80"))
    assert [(p.bind_ip, p.host_port) for p in ep.ports] == [("0.0.0.0", 18400)]
    assert mgr.network_settings(c.id)["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "18400"}
    ]
    server = c.serve_echo("tcp", 80)
    try:
        reply = tcp_exchange(socket.create_connection(("127.0.0.1", 18400), 2), b"4")
        assert reply.endswith(b" 4")
    finally:
        server.close()


def test_explicit_wildcards_bind_one_family(host: Host) -> None:
    """dockerd: `-p 0.0.0.0:P:80` is IPv4 only, `-p [::]:P:80` IPv6 only; only a
    binding without a host address gets both."""
    mgr = host.manager()
    c = host.container()
    ports = [
        PortBinding(container_port=80, host_ip="0.0.0.0", host_port=18410),
        PortBinding(container_port=80, host_ip="::", host_port=18411),
    ]
    ep = mgr.attach(c.id, "bridge", c.netns, name="wild", ports=ports)
    assert [(p.bind_ip, p.host_port) for p in ep.ports] == [("0.0.0.0", 18410), ("::", 18411)]
    server = c.serve_echo("tcp", 80)
    try:
        assert tcp_exchange(socket.create_connection(("127.0.0.1", 18410), 2), b"a").endswith(b"a")
        assert tcp_exchange(socket.create_connection(("::1", 18411), 2), b"b").endswith(b"b")
        for addr in (("::1", 18410), ("127.0.0.1", 18411)):
            with pytest.raises(OSError):
                socket.create_connection(addr, 1)
    finally:
        server.close()
    rules = nft.list_table()
    assert "dport 18410" in rules and "dport 18411" not in rules
