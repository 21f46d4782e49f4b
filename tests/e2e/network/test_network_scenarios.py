"""docker-py (PyPI `docker`) drives skiffd's networking, with skiffd in a network
namespace of the test's own (net_daemons.py): a user network where one container
reaches another by name and by an alias given at connect, a port published with
`ports={'80/tcp': None}` read back and answering on the namespace's loopback; and
the same scenario against Debian's dockerd in a namespace of its own, comparing
the JSON docker-py reads key for key, and /etc/hosts, /etc/resolv.conf and
/etc/hostname in the container.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from net_daemons import NetEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))

import cli_daemons

docker = pytest.importorskip("docker", reason="docker-py (PyPI docker) is not installed")

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

# a client that retries while the server's listener or the name is not there yet
ASK = (
    "for i in $(seq 100); do out=$(nc {host} {port} </dev/null 2>/dev/null); "
    'if [ -n "$out" ]; then echo "$out"; exit 0; fi; sleep 0.1; done; exit 1'
)


def name() -> str:
    return "s" + uuid.uuid4().hex[:10]


def server(port: int, answer: str) -> list[str]:
    """busybox nc serving each connection the answer (-ll: one after another)."""
    return ["nc", "-ll", "-p", str(port), "-e", "echo", answer]


@pytest.fixture
def client(net_engine: NetEngine) -> Iterator[Any]:
    c = docker.DockerClient(base_url=f"unix://{net_engine.sock}", timeout=120)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def dockerd_in_netns() -> Iterator[cli_daemons.Daemon]:
    """Debian's dockerd in a network namespace of its own (--bridge=none, no iptables:
    user networks, their DNS and docker-proxy still work)."""
    if not cli_daemons.BUSYBOX_TAR.exists():
        pytest.skip(f"{cli_daemons.BUSYBOX_TAR} is missing: run `make images`")
    with cli_daemons.dockerd(netns=True) as d:
        yield d


def cleanup(c: Any, containers: list[str], networks: list[str]) -> None:
    for x in containers:
        try:
            c.containers.get(x).remove(force=True)
        except docker.errors.NotFound:
            pass
    for n in networks:
        try:
            c.networks.get(n).remove()
        except docker.errors.NotFound:
            pass


def test_user_network_by_name_and_alias(client: Any) -> None:
    net, other, srv = name(), name(), name()
    try:
        n = client.networks.create(net, driver="bridge", labels={"suite": "scenarios"})
        assert n.name == net and len(n.id) == 64
        s = client.containers.run("busybox", server(7000, "pong"), name=srv, network=net,
                                  detach=True)  # fmt: skip
        n.reload()
        assert s.id in n.attrs["Containers"]
        assert n.attrs["Containers"][s.id]["Name"] == srv
        out = client.containers.run(
            "busybox", ["sh", "-c", ASK.format(host=srv, port=7000)], network=net, remove=True
        )
        assert out == b"pong\n"
        # a second network, joined with an alias: the alias answers there only
        o = client.networks.create(other)
        o.connect(s, aliases=["db"])
        s.reload()
        assert set(s.attrs["NetworkSettings"]["Networks"]) == {net, other}
        assert "db" in s.attrs["NetworkSettings"]["Networks"][other]["Aliases"]
        out = client.containers.run(
            "busybox", ["sh", "-c", ASK.format(host="db", port=7000)], network=other, remove=True
        )
        assert out == b"pong\n"
        o.disconnect(s)
        s.reload()
        assert set(s.attrs["NetworkSettings"]["Networks"]) == {net}
        # a network with an endpoint cannot go; prune leaves it too
        with pytest.raises(docker.errors.APIError) as info:
            n.remove()
        assert info.value.status_code == 403
        pruned = client.networks.prune(filters={"label": "suite=scenarios"})
        assert net not in (pruned.get("NetworksDeleted") or [])
    finally:
        cleanup(client, [srv], [net, other])


def test_published_port_read_back(client: Any, net_engine: NetEngine) -> None:
    c = client.containers.run("busybox", server(80, "hello"), ports={"80/tcp": None},
                              detach=True)  # fmt: skip
    try:
        c.reload()
        bindings = c.ports["80/tcp"]
        host_port = bindings[0]["HostPort"]
        assert host_port.isdigit() and int(host_port) > 0
        assert client.api.port(c.id, 80) == bindings
        res = net_engine.in_netns(
            "busybox", "sh", "-c", ASK.format(host="127.0.0.1", port=host_port), timeout=60
        )
        assert res.stdout == "hello\n", res.stderr
        # the container's own address answers on the container port
        ip = c.attrs["NetworkSettings"]["IPAddress"]
        res = net_engine.in_netns("busybox", "sh", "-c", ASK.format(host=ip, port=80))
        assert res.stdout == "hello\n", res.stderr
    finally:
        c.remove(force=True)
    # after removal the port is closed
    res = net_engine.in_netns("busybox", "nc", "-w", "2", "127.0.0.1", host_port)
    assert res.returncode != 0 and res.stdout == ""


def keys(value: Any, prefix: str = "") -> set[str]:
    """Every key path in a JSON value; list items share one path ([]), map keys that
    are ids or names (Containers, Networks, Ports) are replaced by *."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            key = "*" if prefix.rsplit(".", 1)[-1] in {"Containers", "Networks", "Ports"} else k
            out.add(f"{prefix}.{key}")
            out |= keys(v, f"{prefix}.{key}")
    elif isinstance(value, list):
        for v in value:
            out |= keys(v, f"{prefix}[]")
    return out


def scenario(c: Any, run_client: Any) -> dict[str, Any]:
    """The same steps against either daemon; what docker-py read."""
    net, ctr = name(), name()
    try:
        n = c.networks.create(net, driver="bridge", labels={"a": "b"},
                              ipam=docker.types.IPAMConfig(pool_configs=[
                                  docker.types.IPAMPool(subnet="10.81.0.0/24",
                                                        gateway="10.81.0.1")]))  # fmt: skip
        s = c.containers.run("busybox", server(80, "hi"), name=ctr, network=net,
                             ports={"80/tcp": None}, detach=True)  # fmt: skip
        n.reload()
        s.reload()
        port = c.api.port(s.id, 80)
        v4 = [b for b in port if b["HostIp"] == "0.0.0.0"]
        answer = run_client(ASK.format(host="127.0.0.1", port=v4[0]["HostPort"]))
        listed = [x.attrs for x in c.networks.list(names=[net])]
        files = {
            f: s.exec_run(["cat", f]).output.decode().replace(s.id[:12], "<id>")
            for f in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname")
        }
        return {
            "network": n.attrs,
            "listed": listed[0],
            "settings": s.attrs["NetworkSettings"],
            "port_v4": v4,
            "answer": answer,
            "endpoint": s.attrs["NetworkSettings"]["Networks"][net],
            "files": files,
        }
    finally:
        cleanup(c, [ctr], [net])


def test_parity_with_dockerd(
    client: Any, net_engine: NetEngine, dockerd_in_netns: cli_daemons.Daemon
) -> None:
    d = dockerd_in_netns
    dc = docker.DockerClient(base_url=d.host, timeout=120)

    def in_dockerd_ns(script: str) -> str:
        return subprocess.run(
            ["nsenter", f"--net=/proc/{d.proc.pid}/ns/net", "busybox", "sh", "-c", script],
            capture_output=True, text=True, timeout=60,
        ).stdout  # fmt: skip

    def in_skiffd_ns(script: str) -> str:
        return str(net_engine.in_netns("busybox", "sh", "-c", script, timeout=60).stdout)

    try:
        theirs = scenario(dc, in_dockerd_ns)
    finally:
        dc.close()
    ours = scenario(client, in_skiffd_ns)
    assert ours["answer"] == theirs["answer"] == "hi\n"
    # every key dockerd (API 1.41) gives, skiffd gives (it may add newer ones)
    for part in ("network", "listed", "settings", "endpoint", "port_v4"):
        missing = keys(theirs[part]) - keys(ours[part])
        assert not missing, (part, sorted(missing), ours[part])
    for k in ("Driver", "Scope", "Internal", "Attachable", "Ingress", "EnableIPv6", "Labels",
              "Options"):  # fmt: skip
        assert ours["network"][k] == theirs["network"][k], k
    assert ours["network"]["IPAM"]["Config"] == theirs["network"]["IPAM"]["Config"]
    # same first address, gateway and MAC derivation on the same subnet
    for k in ("IPAddress", "Gateway", "IPPrefixLen", "MacAddress"):
        assert ours["endpoint"][k] == theirs["endpoint"][k], k
    (cid,) = ours["network"]["Containers"]
    (tid,) = theirs["network"]["Containers"]
    a, b = ours["network"]["Containers"][cid], theirs["network"]["Containers"][tid]
    assert (a["IPv4Address"], a["MacAddress"]) == (b["IPv4Address"], b["MacAddress"])
    assert ours["port_v4"][0]["HostIp"] == theirs["port_v4"][0]["HostIp"] == "0.0.0.0"

    # the files written into the container say the same (embedded DNS on a user network);
    # skiffd writes the comment header of newer Docker Engines into resolv.conf
    def said(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    assert {f: said(t) for f, t in ours["files"].items()} == {
        f: said(t) for f, t in theirs["files"].items()
    }


#: a container's NetworkSettings.Networks entry in Engine API 1.45's key order, which
#: skiffd speaks (Docker Engine 25+); dockerd 20.10 (API 1.41) puts MacAddress and
#: DriverOpts after GlobalIPv6PrefixLen and has no DNSNames (API 1.44)
ENDPOINT_KEYS_1_45 = [
    "IPAMConfig", "Links", "Aliases", "MacAddress", "DriverOpts", "NetworkID", "EndpointID",
    "Gateway", "IPAddress", "IPPrefixLen", "IPv6Gateway", "GlobalIPv6Address",
    "GlobalIPv6PrefixLen", "DNSNames",
]  # fmt: skip


def raw_scenario(api: Any, a: str, b: str, ctr: str) -> dict[str, Any]:
    """Networks and a container made through the raw Engine API at version 1.41 (what
    dockerd 20.10 speaks); the JSON as each daemon sent it (json keeps the key order)."""
    try:
        created = api.create_network(
            # maps out of order: Go writes them sorted
            a, driver="bridge", labels={"k": "v", "b": "", "a": "1"},
            options={"com.docker.network.driver.mtu": "1400",
                     "com.docker.network.bridge.enable_icc": "true"},
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
                subnet="10.82.0.0/24", iprange="10.82.0.128/25", gateway="10.82.0.254")]),
        )  # fmt: skip
        created_b = api.create_network(b)  # no IPAM at all: a default pool, Options null
        host = api.create_host_config(port_bindings={80: 8181, "81/udp": None}, network_mode=a)
        cid = api.create_container(
            "busybox", ["sleep", "300"], name=ctr, ports=[80, (81, "udp")], host_config=host
        )["Id"]
        api.start(cid)
        api.connect_container_to_network(cid, b, aliases=["web"])
        return {
            "cid": cid,
            "created": [created, created_b],
            "inspect": api.inspect_network(a),
            "inspect_b": api.inspect_network(b),
            "listed": api.networks(names=[a]),
            "settings": api.inspect_container(cid)["NetworkSettings"],
        }
    finally:
        for ref in (ctr,):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_container(ref, force=True)
        for n in (a, b):
            with contextlib.suppress(docker.errors.APIError):
                api.remove_network(n)


def normal_network(doc: dict[str, Any], subnet_too: bool = False) -> str:
    """A network's JSON with what differs by nature (ids, times, a default pool) masked,
    as ordered text: equal text means equal keys, key order and values."""
    doc = json.loads(json.dumps(doc))
    doc["Id"], doc["Created"] = "ID", "TIME"
    doc["Containers"] = {
        f"CID{i}": {**c, "EndpointID": "EP"}
        for i, c in enumerate(doc.get("Containers", {}).values())
    }
    if subnet_too:
        for cfg in doc["IPAM"]["Config"]:
            cfg.update({k: "POOL" for k in cfg})
    return json.dumps(doc)


def test_raw_json_key_by_key_with_dockerd(
    net_engine: NetEngine, dockerd_in_netns: cli_daemons.Daemon
) -> None:
    theirs_api = docker.APIClient(base_url=dockerd_in_netns.host, version="1.41", timeout=120)
    ours_api = docker.APIClient(base_url=f"unix://{net_engine.sock}", version="1.41", timeout=120)
    try:
        names = name(), name(), name()
        theirs, ours = raw_scenario(theirs_api, *names), raw_scenario(ours_api, *names)
    finally:
        theirs_api.close()
        ours_api.close()
    # POST /networks/create
    for o, t in zip(ours["created"], theirs["created"], strict=True):
        assert list(o) == list(t) == ["Id", "Warning"] and o["Warning"] == t["Warning"] == ""
    # GET /networks/{id}: every key, in order, and every value (IPAM.Config is Subnet,
    # IPRange, Gateway; IPAM.Options null when the request had none)
    assert normal_network(ours["inspect"]) == normal_network(theirs["inspect"])
    assert normal_network(ours["inspect_b"], True) == normal_network(theirs["inspect_b"], True)
    # GET /networks (no Containers in a list)
    assert [normal_network(n) for n in ours["listed"]] == [
        normal_network(n) for n in theirs["listed"]
    ]
    o_set, t_set = ours["settings"], theirs["settings"]

    # NetworkSettings.Ports: 0.0.0.0 then [::] for each binding, as dockerd
    def ports(p: dict[str, Any]) -> str:
        return re.sub(r'"HostPort": "3\d{4}"', '"HostPort": "EPH"', json.dumps(p))

    assert ports(o_set["Ports"]) == ports(t_set["Ports"])
    assert o_set["Ports"]["80/tcp"] == [
        {"HostIp": "0.0.0.0", "HostPort": "8181"},
        {"HostIp": "::", "HostPort": "8181"},
    ]
    # the legacy top-level fields are empty on a user network, as dockerd's; the
    # top-level key order is Engine API 1.45's (Docker 25+ moved SandboxKey and Ports)
    assert set(t_set) <= set(o_set), set(t_set) - set(o_set)
    for k in ("Bridge", "HairpinMode", "LinkLocalIPv6Address", "LinkLocalIPv6PrefixLen",
              "SecondaryIPAddresses", "SecondaryIPv6Addresses", "EndpointID", "Gateway",
              "GlobalIPv6Address", "GlobalIPv6PrefixLen", "IPAddress", "IPPrefixLen",
              "IPv6Gateway", "MacAddress"):  # fmt: skip
        assert o_set[k] == t_set[k], k
    # each endpoint: dockerd's values under the same keys, in API 1.45's order
    for net in names[:2]:
        o, t = o_set["Networks"][net], t_set["Networks"][net]
        assert list(o) == ENDPOINT_KEYS_1_45
        assert set(t) <= set(o)
        for k in ("NetworkID", "EndpointID"):
            assert len(o[k]) == len(t[k]) == 64
        same = ("Links", "IPv6Gateway", "GlobalIPv6Address", "GlobalIPv6PrefixLen")
        if net == names[0]:  # a fixed subnet: same address, gateway, MAC
            same += ("Gateway", "IPAddress", "IPPrefixLen", "MacAddress", "IPAMConfig")
            same += ("DriverOpts",)
        for k in same:
            assert o[k] == t[k], (net, k, o[k], t[k])
        # Known differences, all in the containers layer (what a connect request sent is
        # echoed; API < 1.45 adds the short id to Aliases); see docs/networking.md:
        # after `connect`, dockerd echoes IPAMConfig {} and DriverOpts {} where skiffd
        # says null, and API 1.41 lists the short id among Aliases
        assert (o["IPAMConfig"] or None) == (t["IPAMConfig"] or None)
        assert (o["DriverOpts"] or None) == (t["DriverOpts"] or None)
        short = {ours["cid"][:12], theirs["cid"][:12]}
        assert set(o["Aliases"] or []) - short == set(t["Aliases"] or []) - short
