"""Unit tests of the network layer's pure parts: port specs, IPAM, /etc files,
the DNS codec and resolver, the nftables ruleset, Docker's JSON shapes."""

from __future__ import annotations

import asyncio
import ipaddress
import json
from pathlib import Path

import pytest

from skiff.engine.network import dns, errors, etcfiles, ipam, model, nft, shapes
from skiff.engine.network.model import Endpoint, Network, PortBinding, mac_for_ip, parse_publish
from skiff.engine.network.store import NetworkStore


def test_parse_publish_forms() -> None:
    assert parse_publish("80") == [PortBinding(container_port=80)]
    assert parse_publish("8080:80") == [PortBinding(container_port=80, host_port=8080)]
    assert parse_publish("127.0.0.1:8080:80/udp") == [
        PortBinding(container_port=80, proto="udp", host_ip="127.0.0.1", host_port=8080)
    ]
    assert parse_publish("127.0.0.1::80") == [PortBinding(container_port=80, host_ip="127.0.0.1")]
    assert [(p.host_port, p.container_port) for p in parse_publish("8000-8001:80-81")] == [
        (8000, 80),
        (8001, 81),
    ]
    assert parse_publish("9000-9009:80") == [
        PortBinding(container_port=80, host_port=9000, host_port_end=9009)
    ]
    assert len(parse_publish("80-82/udp")) == 3


@pytest.mark.parametrize(
    "spec", ["", "x:80", "8000-8002:80-81", "80/icmp", "1.2.3:80:80", "70000:80", "90-80"]
)
def test_parse_publish_rejects(spec: str) -> None:
    with pytest.raises(errors.InvalidPortSpec):
        parse_publish(spec)


def test_mac_is_dockers() -> None:
    assert mac_for_ip("172.17.0.2") == "02:42:ac:11:00:02"
    assert mac_for_ip("10.0.255.1") == "02:42:0a:00:ff:01"


def _net(subnet: str = "10.1.0.0/29", ip_range: str = "") -> Network:
    cfg = ipam.plan_subnet(subnet=subnet, gateway=None, ip_range=ip_range or None, taken=[])
    net = Network(id="n" * 64, name="n", driver="bridge", created="", ipam=[cfg])
    ipam.reserve_gateway(net)
    return net


def test_ipam_allocates_lowest_free_and_releases() -> None:
    net = _net()
    got = [ipam.allocate(net, f"e{i}")[0] for i in range(5)]
    assert got == ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
    with pytest.raises(errors.NoAvailableAddress):
        ipam.allocate(net, "e9")
    ipam.release(net, "e1")
    assert ipam.allocate(net, "e7") == ("10.1.0.3", 29)


def test_ipam_static_and_range() -> None:
    net = _net("10.2.0.0/24", "10.2.0.128/25")
    assert ipam.allocate(net, "a") == ("10.2.0.128", 24)
    assert ipam.allocate(net, "b", "10.2.0.7") == ("10.2.0.7", 24)
    with pytest.raises(errors.AddressInUse):
        ipam.allocate(net, "c", "10.2.0.7")
    with pytest.raises(errors.AddressInUse):
        ipam.allocate(net, "c", "10.2.0.1")  # the gateway
    with pytest.raises(errors.AddressOutsideSubnet):
        ipam.allocate(net, "c", "10.3.0.7")


def test_plan_subnet_checks_and_defaults() -> None:
    taken = [ipaddress.IPv4Network("172.17.0.0/16"), ipaddress.IPv4Network("172.18.0.0/16")]
    assert ipam.plan_subnet(subnet=None, gateway=None, ip_range=None, taken=taken).subnet == (
        "172.19.0.0/16"
    )
    with pytest.raises(errors.PoolOverlap):
        ipam.plan_subnet(subnet="172.17.3.0/24", gateway=None, ip_range=None, taken=taken)
    cfg = ipam.plan_subnet(subnet="10.5.0.0/16", gateway="10.5.9.9", ip_range=None, taken=taken)
    assert (cfg.subnet, cfg.gateway) == ("10.5.0.0/16", "10.5.9.9")
    pools = [ipam.parse_pool("base=10.10.0.0/23,size=24")]
    assert (
        ipam.plan_subnet(subnet=None, gateway=None, ip_range=None, taken=[], pools=pools).subnet
        == "10.10.0.0/24"
    )
    full = [ipaddress.IPv4Network("10.10.0.0/23")]
    with pytest.raises(errors.NoAvailablePool):
        ipam.plan_subnet(subnet=None, gateway=None, ip_range=None, taken=full, pools=pools)


def test_store_round_trip(tmp_path: Path) -> None:
    store = NetworkStore(tmp_path)
    net = _net()
    ep = Endpoint(
        id="e" * 64,
        network_id=net.id,
        container_id="c" * 64,
        container_name="c",
        ifname="eth0",
        host_ifname="vetheee",
        netns_path="/proc/1/ns/net",
        netns_inode=1,
        ports=[PortBinding(container_port=80, host_port=8080)],
    )
    store.networks[net.id] = net
    store.endpoints[ep.id] = ep
    store.save()
    again = NetworkStore(tmp_path)
    again.load()
    assert again.networks == store.networks and again.endpoints == store.endpoints
    assert json.loads((tmp_path / "network.json").read_text())["format"] == 1


def test_hosts_file_as_docker_writes_it() -> None:
    text = etcfiles.hosts_file(
        hostname="abc", addresses=["172.17.0.2"], extra_hosts=[("db", "10.0.0.9")]
    )
    lines = text.splitlines()
    assert lines[0] == "127.0.0.1\tlocalhost"
    assert lines[1] == "::1\tlocalhost ip6-localhost ip6-loopback"
    assert lines[-2:] == ["10.0.0.9\tdb", "172.17.0.2\tabc"]
    assert etcfiles.hosts_file(hostname="h", domainname="d.io", addresses=["1.2.3.4"]).endswith(
        "1.2.3.4\th.d.io h\n"
    )
    assert etcfiles.hostname_file("abc") == "abc\n"


def test_resolv_conf_both_kinds() -> None:
    host = "nameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0\n"
    legacy = etcfiles.resolv_conf(host, internal_resolver=False)
    assert "nameserver 10.0.0.2\nsearch corp.example\noptions edns0\n" in legacy
    assert "127.0.0.53" not in legacy and legacy.startswith("# Generated by Docker Engine.")
    only_local = etcfiles.resolv_conf("nameserver 127.0.0.53\n", internal_resolver=False)
    assert "nameserver 8.8.8.8\nnameserver 8.8.4.4\n" in only_local
    internal = etcfiles.resolv_conf(host, internal_resolver=True)
    assert "nameserver 127.0.0.11\nsearch corp.example\noptions ndots:0 edns0\n" in internal
    assert "# ExtServers: [host(127.0.0.53), 10.0.0.2]" in internal
    custom = etcfiles.resolv_conf(host, internal_resolver=False, dns=["9.9.9.9"])
    assert "nameserver 9.9.9.9\n" in custom and "Overrides: [nameservers]" in custom


def test_dns_codec_and_resolver() -> None:
    names = {"web": ["10.0.0.2", "10.0.0.3"]}
    resolver = dns.Resolver(
        lambda q: names.get(q), lambda ip: "web.net" if ip == "10.0.0.2" else None, []
    )

    def ask(name: str, qtype: int = dns.TYPE_A) -> tuple[int, list[tuple[int, bytes]]]:
        reply = asyncio.run(resolver.answer(dns.build_query(7, name, qtype)))
        assert reply is not None and reply[:2] == b"\x00\x07"
        return dns.parse_answer(reply)

    assert ask("WEB.") == (
        0,
        [(dns.TYPE_A, bytes([10, 0, 0, 2])), (dns.TYPE_A, bytes([10, 0, 0, 3]))],
    )
    assert ask("web", dns.TYPE_AAAA) == (0, [])
    assert ask(dns.reverse_name("10.0.0.2"), dns.TYPE_PTR) == (
        0,
        [(dns.TYPE_PTR, dns.encode_name("web.net"))],
    )
    # not ours and no upstream: SERVFAIL rather than silence
    assert ask("other.example")[0] == dns.RCODE_SERVFAIL
    assert asyncio.run(resolver.answer(b"\x00\x01junk")) is None


def test_parse_resolv_conf() -> None:
    text = "# c\nnameserver 1.1.1.1 ; x\ndomain a.b\nsearch c.d e.f\noptions ndots:2 rotate\n"
    assert dns.parse_resolv_conf(text) == (["1.1.1.1"], ["c.d", "e.f"], ["ndots:2", "rotate"])


def test_nft_ruleset() -> None:
    text = nft.render(
        [
            nft.BridgeRules("skiff0", "172.30.0.0/16", False),
            nft.BridgeRules("br-x", "10.0.0.0/24", True),
        ],
        [nft.PortRule("tcp", "", 8080, "172.30.0.2", 80, "skiff0")],
        hairpin_proxy=True,
    )
    assert text.startswith("table ip skiff\ndelete table ip skiff\n")
    assert 'iifname != "skiff0" tcp dport 8080 dnat to 172.30.0.2:80' in text
    assert 'ip saddr 172.30.0.0/16 oifname != "skiff0" masquerade' in text
    assert "10.0.0.0/24" not in text  # internal: no masquerade
    assert 'iifname "br-x" oifname != "br-x" drop' in text
    assert 'iifname "skiff0" oifname { "br-x" } drop' in text
    assert "ip daddr != 127.0.0.0/8 fib daddr type local jump published" in text
    assert "127.0.0.0/8 oifname" not in text


def test_nft_ruleset_without_proxy() -> None:
    text = nft.render(
        [nft.BridgeRules("skiff0", "172.30.0.0/16", False)],
        [nft.PortRule("tcp", "", 8080, "172.30.0.2", 80, "skiff0")],
        hairpin_proxy=False,
    )
    # loopback destinations are DNATed too, and their source is masqueraded to the bridge
    assert "    fib daddr type local jump published" in text
    assert "ip daddr != 127.0.0.0/8" not in text
    assert 'ip saddr 127.0.0.0/8 oifname "skiff0" masquerade' in text


def test_network_json_shape() -> None:
    net = _net()
    ep = Endpoint(
        id="e" * 64,
        network_id=net.id,
        container_id="c" * 64,
        container_name="web",
        ifname="eth0",
        host_ifname="veth1",
        netns_path="",
        netns_inode=0,
        ip="10.1.0.2",
        prefixlen=29,
        mac="02:42:0a:01:00:02",
    )
    doc = shapes.network_json(net, [ep])
    assert list(doc) == [
        "Name", "Id", "Created", "Scope", "Driver", "EnableIPv6", "IPAM", "Internal",
        "Attachable", "Ingress", "ConfigFrom", "ConfigOnly", "Containers", "Options", "Labels",
    ]  # fmt: skip
    assert doc["IPAM"]["Config"] == [{"Subnet": "10.1.0.0/29", "Gateway": "10.1.0.1"}]
    assert doc["Containers"]["c" * 64]["IPv4Address"] == "10.1.0.2/29"
    assert shapes.ports_json([ep]) == {}


def test_errors_carry_dockers_status() -> None:
    assert errors.PoolOverlap().http_status == 403
    assert errors.NetworkNotFound("x").http_status == 404
    assert errors.NetworkExists("x").http_status == 409
    assert errors.AddressOutsideSubnet("1.2.3.4").http_status == 400
    assert errors.NetworkInUse("n", "i").http_status == 403


def test_ipam_json_in_libnetworks_order_and_options_as_given() -> None:
    net = _net("10.1.0.0/24", "10.1.0.128/25")
    doc = shapes.network_json(net, [])
    (cfg,) = doc["IPAM"]["Config"]
    assert list(cfg.items()) == [
        ("Subnet", "10.1.0.0/24"),
        ("IPRange", "10.1.0.128/25"),
        ("Gateway", "10.1.0.1"),
    ]
    assert doc["IPAM"]["Options"] == {}  # a record from before ipam_options: the CLI's {}
    net.ipam_options = None
    assert shapes.network_json(net, [])["IPAM"]["Options"] is None
    # a network read back from network.json keeps it
    again = Network.from_json(model.to_json(net))
    assert again.ipam_options is None


def test_ipv6_port_errors_in_gos_words() -> None:
    e = errors.ProxyBindFailed("web", "e" * 64, "udp", "::", 8181)
    assert str(e).endswith("Error starting userland proxy: listen udp6 [::]:8181: bind: "
                           "address already in use")  # fmt: skip
    assert "listen tcp4 127.0.0.1:80:" in str(
        errors.ProxyBindFailed("w", "e", "tcp", "127.0.0.1", 80)
    )
    assert parse_publish("[::1]:8184:83") == [
        PortBinding(container_port=83, host_ip="::1", host_port=8184)
    ]
    assert PortBinding(container_port=1, host_ip="::").bind_ip == "::"
