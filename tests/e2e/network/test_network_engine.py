"""skiffd's networking end to end, driven by the real docker CLI: user networks with
names and aliases, isolation, --internal, published ports (TCP, UDP, ranges, -P),
connect/disconnect, Docker's errors, clean-up, and a daemon restart that keeps the
ports of running containers. skiffd runs in a network namespace the test made
(net_daemons.py); clients of published ports run in that namespace too.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Iterator

import pytest
from net_daemons import NetEngine

SERVER = "while true; do echo pong | nc -l -p {port}; done"

UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {port}))
while True:
    data, peer = s.recvfrom(2048)
    s.sendto(b"echo:" + data, peer)
"""

UDP_CLIENT = """
import socket, sys
ip = "{ip}"
s = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
for _ in range(10):
    s.sendto(b"ping", (ip, {port}))
    try:
        print(s.recvfrom(2048)[0].decode())
        sys.exit(0)
    except OSError:
        continue
sys.exit(1)
"""

TCP_CLIENT = """
import socket, sys, time
deadline = time.monotonic() + {wait}
while True:
    try:
        with socket.create_connection(("{ip}", {port}), timeout=2) as s:
            s.sendall(b"ping\\n")
            s.settimeout(3)
            data = s.recv(100)
            if data:
                print(data.decode().strip())
                sys.exit(0)
    except OSError as e:
        err = e
    if time.monotonic() > deadline:
        print(err, file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
"""


def uniq(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def tcp(eng: NetEngine, port: int, ip: str = "127.0.0.1", wait: float = 5) -> str | None:
    """What a TCP client in the test netns reads from ip:port (None: nothing answers)."""
    res = eng.in_netns("python3", "-c", TCP_CLIENT.format(ip=ip, port=port, wait=wait))
    return res.stdout.strip() if res.returncode == 0 else None


@contextlib.contextmanager
def containers(eng: NetEngine) -> Iterator[list[str]]:
    """Names appended to the list are removed (rm -f) at the end, whatever happens."""
    names: list[str] = []
    try:
        yield names
    finally:
        if names:
            eng.docker("rm", "-f", *names, check=False, timeout=120)


@contextlib.contextmanager
def networks(eng: NetEngine) -> Iterator[list[str]]:
    names: list[str] = []
    try:
        yield names
    finally:
        for n in names:
            eng.docker("network", "rm", n, check=False)


def inspect(eng: NetEngine, ref: str) -> dict:  # type: ignore[type-arg]
    return json.loads(eng.docker("inspect", ref).stdout)[0]  # type: ignore[no-any-return]


def test_user_network_names_aliases_tcp(net_engine: NetEngine) -> None:
    eng = net_engine
    with networks(eng) as nets, containers(eng) as cs:
        net, srv = uniq("net"), uniq("srv")
        nets.append(net)
        eng.docker("network", "create", net)
        cs.append(srv)
        eng.docker("run", "-d", "--name", srv, "--network", net, "--network-alias", "db",
                   "busybox", "sh", "-c", SERVER.format(port=7000))  # fmt: skip
        out = eng.docker(
            "run", "--rm", "--network", net, "busybox", "sh", "-c",
            f"ping -c1 -W2 {srv} && ping -c1 -W2 db && ping -c1 -W2 {srv}.{net} "
            f"&& sleep 0.2 && echo ping | nc db 7000 && cat /etc/resolv.conf",
            timeout=60,
        ).stdout  # fmt: skip
        assert "pong" in out and "nameserver 127.0.0.11" in out
        ip = inspect(eng, srv)["NetworkSettings"]["Networks"][net]["IPAddress"]
        assert f"PING {srv} ({ip})" in out and f"PING db ({ip})" in out
        # a name that is not on the network is not answered by the embedded DNS server
        res = eng.docker("run", "--rm", "--network", net, "busybox",
                         "ping", "-c1", "-W1", "nosuchname", check=False)  # fmt: skip
        assert res.returncode != 0 and "bad address" in (res.stdout + res.stderr)


def test_networks_are_isolated_and_internal_has_no_route_out(net_engine: NetEngine) -> None:
    eng = net_engine
    with networks(eng) as nets, containers(eng) as cs:
        a, b, internal, ca = uniq("neta"), uniq("netb"), uniq("neti"), uniq("ca")
        nets += [a, b, internal]
        eng.docker("network", "create", a)
        eng.docker("network", "create", b)
        eng.docker("network", "create", "--internal", internal)
        cs.append(ca)
        eng.docker("run", "-d", "--name", ca, "--network", a, "busybox", "sleep", "300")
        ip_a = inspect(eng, ca)["NetworkSettings"]["Networks"][a]["IPAddress"]
        gw_b = json.loads(eng.docker("network", "inspect", b).stdout)[0]["IPAM"]["Config"][0][
            "Gateway"
        ]
        # same network: reachable; other network: neither the address nor the name
        ok = eng.docker("run", "--rm", "--network", a, "busybox", "ping", "-c1", "-W2", ip_a,
                        check=False)  # fmt: skip
        assert ok.returncode == 0, ok.stderr
        res = eng.docker("run", "--rm", "--network", b, "busybox", "sh", "-c",
                         f"ping -c1 -W1 {ip_a}; echo rc=$?; ping -c1 -W1 {ca}; echo rc=$?; "
                         f"ping -c1 -W1 {gw_b} >/dev/null; echo gw=$?")  # fmt: skip
        assert "rc=1" in res.stdout and "bad address" in res.stderr, res
        assert "gw=0" in res.stdout  # the network works, only the other one is cut off
        # --internal: no default route, the host's other addresses are unreachable
        res = eng.docker("run", "--rm", "--network", internal, "busybox", "sh", "-c",
                         f"ip route; ping -c1 -W1 {gw_b}; echo rc=$?")  # fmt: skip
        assert "default" not in res.stdout and "rc=0" not in res.stdout, res
        assert json.loads(eng.docker("network", "inspect", internal).stdout)[0]["Internal"]


def test_published_ports_tcp_udp_range_and_all(net_engine: NetEngine) -> None:
    eng = net_engine
    with containers(eng) as cs:
        web, udp = uniq("web"), uniq("udp")
        cs += [web, udp]
        eng.docker("run", "-d", "--name", web, "-p", "18080:80", "-p", "18100-18110:81",
                   "--expose", "82", "-P", "busybox", "sh", "-c",
                   "(while true; do echo p81 | nc -l -p 81; done) & "
                   "(while true; do echo p82 | nc -l -p 82; done) & " + SERVER.format(port=80))  # fmt: skip
        assert tcp(eng, 18080) == "pong"
        # the namespace has ::1: as dockerd, the port is published on [::] too (V6ONLY),
        # served by the proxy to the container's IPv4 address
        assert tcp(eng, 18080, "::1") == "pong"
        ports = inspect(eng, web)["NetworkSettings"]["Ports"]
        assert ports["80/tcp"] == [
            {"HostIp": "0.0.0.0", "HostPort": "18080"},
            {"HostIp": "::", "HostPort": "18080"},
        ]
        r = int(ports["81/tcp"][0]["HostPort"])
        assert 18100 <= r <= 18110 and tcp(eng, r) == "p81"
        p82 = int(ports["82/tcp"][0]["HostPort"])
        assert p82 >= 1024 and tcp(eng, p82) == "p82"
        # docker port reads the same
        out = eng.docker("port", web).stdout
        assert "80/tcp -> 0.0.0.0:18080\n80/tcp -> [::]:18080\n" in out
        assert f"82/tcp -> 0.0.0.0:{p82}\n82/tcp -> [::]:{p82}\n" in out
        assert eng.docker("port", web, "80").stdout == "0.0.0.0:18080\n[::]:18080\n"
        # ps lists them
        ps = eng.docker("ps", "--filter", f"name={web}", "--format", "{{.Ports}}").stdout
        assert "0.0.0.0:18080->80/tcp, [::]:18080->80/tcp" in ps
        # from another container through the host's bridge address (DNAT, hairpin)
        gw = inspect(eng, web)["NetworkSettings"]["Gateway"]
        assert tcp(eng, 18080, gw) == "pong"
        out = eng.docker("run", "--rm", "busybox", "sh", "-c", f"echo x | nc {gw} 18080").stdout
        assert "pong" in out

        # UDP: an echo server in the container's namespace (busybox nc has no -u)
        eng.docker("run", "-d", "--name", udp, "-p", "15353:5353/udp", "busybox", "sleep", "300")
        pid = inspect(eng, udp)["State"]["Pid"]
        server = subprocess.Popen(
            ["nsenter", "-t", str(pid), "-n", "python3", "-c", UDP_ECHO.format(port=5353)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            res = eng.in_netns("python3", "-c", UDP_CLIENT.format(ip="127.0.0.1", port=15353))
            assert res.stdout.strip() == "echo:ping", res
            # over IPv6 loopback too: the proxy's [::] listener reaches the IPv4 container
            res = eng.in_netns("python3", "-c", UDP_CLIENT.format(ip="::1", port=15353))
            assert res.stdout.strip() == "echo:ping", res
        finally:
            server.kill()
            server.wait()

        # stopped: the ports close
        eng.docker("stop", "-t", "1", web)
        assert tcp(eng, 18080, wait=0.5) is None
        assert inspect(eng, web)["NetworkSettings"]["Ports"] == {}
        # and started again: open again (same explicit port)
        eng.docker("start", web)
        assert tcp(eng, 18080) == "pong"


def test_published_ports_on_explicit_addresses(net_engine: NetEngine) -> None:
    # an explicit address is that family alone (dockerd's reading): 0.0.0.0 has no [::]
    # twin, [::1] is IPv6 loopback only, 127.0.0.1 IPv4 loopback only
    eng = net_engine
    with containers(eng) as cs:
        web = uniq("ips")
        cs.append(web)
        eng.docker("run", "-d", "--name", web, "-p", "0.0.0.0:18401:80", "-p", "[::1]:18402:80",
                   "-p", "127.0.0.1:18403:80", "busybox", "sh", "-c", SERVER.format(port=80))  # fmt: skip
        ports = inspect(eng, web)["NetworkSettings"]["Ports"]["80/tcp"]
        assert sorted((p["HostIp"], p["HostPort"]) for p in ports) == [
            ("0.0.0.0", "18401"), ("127.0.0.1", "18403"), ("::1", "18402"),
        ]  # fmt: skip
        assert tcp(eng, 18401) == "pong" and tcp(eng, 18401, "::1", wait=0.5) is None
        assert tcp(eng, 18402, "::1") == "pong" and tcp(eng, 18402, wait=0.5) is None
        assert tcp(eng, 18403) == "pong" and tcp(eng, 18403, "::1", wait=0.5) is None


def test_errors_in_dockers_words(net_engine: NetEngine) -> None:
    eng = net_engine
    with networks(eng) as nets, containers(eng) as cs:
        net, other, user = uniq("sub"), uniq("ovl"), uniq("holder")
        nets += [net, other]
        eng.docker("network", "create", "--subnet", "10.77.0.0/24", net)
        res = eng.docker("network", "create", "--subnet", "10.77.0.0/16", other, check=False)
        assert res.returncode != 0
        assert "Pool overlaps with other one on this address space" in res.stderr
        res = eng.docker("run", "--rm", "--network", net, "--ip", "10.99.0.5", "busybox", "true",
                         check=False)  # fmt: skip
        assert (
            res.returncode != 0
            and ("invalid address 10.99.0.5: It does not belong to any of this network's subnets")
            in res.stderr
        ), res.stderr
        res = eng.docker("run", "--rm", "--ip", "172.30.9.9", "busybox", "true", check=False)
        assert "user specified IP address is supported on user defined networks only" in res.stderr
        # --ip inside the subnet works
        out = eng.docker("run", "--rm", "--network", net, "--ip", "10.77.0.50", "busybox",
                         "ip", "-4", "-o", "addr", "show", "eth0").stdout  # fmt: skip
        assert "10.77.0.50/24" in out
        cs.append(user)
        eng.docker("run", "-d", "--name", user, "--network", net, "-p", "18200:80",
                   "busybox", "sleep", "300")  # fmt: skip
        res = eng.docker("network", "rm", net, check=False)
        net_id = json.loads(eng.docker("network", "inspect", net).stdout)[0]["Id"]
        assert (
            res.returncode != 0
            and (f"error while removing network: network {net} id {net_id} has active endpoints")
            in res.stderr
        ), res.stderr
        res = eng.docker("run", "--rm", "-p", "18200:80", "busybox", "true", check=False)
        assert res.returncode != 0
        assert "Bind for 0.0.0.0:18200 failed: port is already allocated" in res.stderr
        # a port taken on [::] alone (by a listener of the test's) fails as dockerd's
        # proxy fails: the port must be free on both families
        holder = subprocess.Popen(
            ["ip", "netns", "exec", eng.netns, "python3", "-c",
             "import socket, time\ns = socket.socket(socket.AF_INET6)\n"
             "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
             "s.bind(('::', 18201)); s.listen(); print('up', flush=True); time.sleep(60)"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "up\n"
            res = eng.docker("run", "--rm", "-p", "18201:80", "busybox", "true", check=False)
            assert res.returncode != 0
            assert (
                "Error starting userland proxy: listen tcp6 [::]:18201: bind: address already "
                "in use" in res.stderr
            ), res.stderr
            # and nothing stays bound on 0.0.0.0 for the failed container
            assert eng.in_netns("ss", "-Htln", "sport = :18201").stdout.count("\n") == 1
        finally:
            holder.kill()
            holder.wait()
        res = eng.docker("network", "rm", "bridge", check=False)
        assert "bridge is a pre-defined network and cannot be removed" in res.stderr
        res = eng.docker("network", "inspect", "no-such-net", check=False)
        assert res.returncode != 0 and "network no-such-net not found" in res.stderr
        res = eng.docker("run", "--rm", "--network", "no-such-net", "busybox", "true", check=False)
        assert res.returncode != 0 and "network no-such-net not found" in res.stderr


def test_connect_disconnect_inspect_and_cleanup(net_engine: NetEngine) -> None:
    eng = net_engine
    with networks(eng) as nets, containers(eng) as cs:
        net, app, peer, side = uniq("cn"), uniq("app"), uniq("peer"), uniq("side")
        nets.append(net)
        eng.docker("network", "create", "--subnet", "10.78.0.0/24", "--label", "k=v", net)
        cs += [app, peer, side]
        eng.docker("run", "-d", "--name", app, "busybox", "sleep", "300")
        links_before = set(eng.links())
        eng.docker("network", "connect", "--ip", "10.78.0.9", "--alias", "api", net, app)
        out = eng.docker("exec", app, "ip", "-4", "-o", "addr").stdout
        assert "eth0" in out and "10.78.0.9/24" in out and "eth1" in out
        info = json.loads(eng.docker("network", "inspect", net).stdout)[0]
        (entry,) = info["Containers"].values()
        assert entry["Name"] == app and entry["IPv4Address"] == "10.78.0.9/24"
        assert entry["MacAddress"] == "02:42:0a:4e:00:09" and info["Labels"] == {"k": "v"}
        c = inspect(eng, app)
        assert set(c["NetworkSettings"]["Networks"]) == {"bridge", net}
        assert c["NetworkSettings"]["Networks"][net]["Aliases"] == ["api"]
        assert c["NetworkSettings"]["Networks"][net]["EndpointID"] == entry["EndpointID"]
        assert c["HostConfig"]["NetworkMode"] == "bridge"
        eng.docker("run", "-d", "--name", peer, "--network", net, "busybox", "sleep", "300")
        eng.docker("exec", peer, "ping", "-c1", "-W2", "api")
        eng.docker("exec", peer, "ping", "-c1", "-W2", app)
        # a rename is answered under the new name only
        renamed = uniq("renamed")
        eng.docker("rename", app, renamed)
        eng.docker("exec", peer, "ping", "-c1", "-W2", renamed)
        res = eng.docker("exec", peer, "ping", "-c1", "-W1", app, check=False)
        assert res.returncode != 0
        eng.docker("rename", renamed, app)
        # ls with filters
        ls = eng.docker("network", "ls", "--filter", "label=k=v", "--format", "{{.Name}}").stdout
        assert ls.split() == [net]
        custom = eng.docker("network", "ls", "--filter", "type=custom", "--format",
                            "{{.Name}}").stdout.split()  # fmt: skip
        assert net in custom and "bridge" not in custom
        # disconnect: eth1 goes, the name no longer resolves
        eng.docker("network", "disconnect", net, app)
        out = eng.docker("exec", app, "ip", "-o", "link").stdout
        assert "eth1" not in out
        res = eng.docker("exec", peer, "ping", "-c1", "-W1", "api", check=False)
        assert res.returncode != 0
        assert json.loads(eng.docker("network", "inspect", net).stdout)[0]["Containers"].keys() == {
            inspect(eng, peer)["Id"]
        }
        # --network container:<id> shares the namespace
        out = eng.docker("run", "--rm", "--network", f"container:{peer}", "busybox", "sh", "-c",
                         f"ip -4 -o addr show eth0 && grep 127.0.0.11 /etc/resolv.conf "
                         f"&& ping -c1 -W2 {peer}").stdout  # fmt: skip
        ip = inspect(eng, peer)["NetworkSettings"]["Networks"][net]["IPAddress"]
        assert ip in out and f"PING {peer} ({ip})" in out
        # a stopped container can be connected; it gets the network at its next start
        eng.docker("create", "--name", side, "busybox", "sleep", "300")
        eng.docker("network", "connect", net, side)
        eng.docker("start", side)
        assert inspect(eng, side)["NetworkSettings"]["Networks"][net]["IPAddress"]
        eng.docker("rm", "-f", app, peer, side)
        cs.clear()
        # clean-up: no veth left, no endpoint left, the network removable
        assert set(eng.links()) <= links_before | {"skiff0"}
        assert not [name for name in eng.links() if name.startswith("veth")]
        eng.docker("network", "rm", net)
        nets.clear()


def test_prune_and_bridge_none_default(net_engine: NetEngine) -> None:
    eng = net_engine
    with networks(eng) as nets:
        keep, gone = uniq("keep"), uniq("gone")
        nets += [keep, gone]
        eng.docker("network", "create", "--label", "keep=1", keep)
        eng.docker("network", "create", gone)
        out = eng.docker("network", "prune", "-f", "--filter", "label!=keep=1").stdout
        assert gone in out and keep not in out
        names = eng.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
        assert keep in names and gone not in names and "bridge" in names


def test_restart_keeps_ports_and_releases_the_dead(own_net_engine: NetEngine) -> None:
    eng = own_net_engine
    live, dead = uniq("live"), uniq("dead")
    eng.docker("run", "-d", "--name", live, "-p", "18300:80", "busybox", "sh", "-c",
               SERVER.format(port=80))  # fmt: skip
    eng.docker("run", "-d", "--name", dead, "-p", "18301:80", "busybox", "sh", "-c",
               SERVER.format(port=80))  # fmt: skip
    assert tcp(eng, 18300) == "pong" and tcp(eng, 18301) == "pong"
    dead_pid = inspect(eng, dead)["State"]["Pid"]
    veths = [n for n in eng.links() if n.startswith("veth")]
    assert len(veths) == 2
    # a user network's names are answered again after the restart (DNS servers come back)
    net, named = uniq("rnet"), uniq("named")
    eng.docker("network", "create", net)
    eng.docker("network", "connect", "--alias", "lookme", net, live)
    eng.docker("run", "-d", "--name", named, "--network", net, "busybox", "sleep", "300")
    # SIGKILL skiffd; one container dies while it is down
    eng.kill_skiffd()
    import os
    import signal

    os.kill(dead_pid, signal.SIGKILL)
    time.sleep(0.5)
    eng.restart_skiffd(kill=True)
    assert tcp(eng, 18300) == "pong"
    assert tcp(eng, 18300, "::1") == "pong"  # the [::] listener is restored too
    assert tcp(eng, 18301, wait=0.5) is None
    assert tcp(eng, 18301, "::1", wait=0.5) is None
    state = inspect(eng, dead)["State"]
    assert not state["Running"]
    assert inspect(eng, dead)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"] == ""
    bridge = json.loads(eng.docker("network", "inspect", "bridge").stdout)[0]
    assert list(bridge["Containers"]) == [inspect(eng, live)["Id"]]
    eng.docker("exec", named, "ping", "-c1", "-W2", "lookme")
    # a graceful restart keeps it too, and the port can be reused by a new container
    eng.restart_skiffd(kill=False)
    assert tcp(eng, 18300) == "pong"
    eng.docker("exec", named, "ping", "-c1", "-W2", live)
    eng.docker("run", "-d", "--name", uniq("reuse"), "-p", "18301:80", "busybox", "sleep", "30")
    # live (bridge + rnet), named, reuse
    assert len([n for n in eng.links() if n.startswith("veth")]) == 4
    # the rules follow the store
    rules = eng.in_netns("nft", "list", "table", "ip", "skiff").stdout
    assert "dport 18300" in rules and "dport 18301" in rules


@pytest.mark.parametrize("mode", ["host", "none"])
def test_host_and_none_modes(net_engine: NetEngine, mode: str) -> None:
    eng = net_engine
    out = eng.docker("run", "--rm", "--network", mode, "busybox", "ip", "-o", "link").stdout
    if mode == "none":
        assert "eth0" not in out and "lo:" in out and "UP" in out
    else:
        assert "skiff0" in out  # the daemon's (test) namespace


def test_daemon_flags_bip_pools_no_iptables() -> None:
    from net_daemons import need_root_tools
    from net_daemons import net_engine as start

    why = need_root_tools()
    if why:
        pytest.skip(why)
    flags = ["--iptables=false", "--bip", "10.200.0.1/24",
             "--default-address-pool", "base=10.201.0.0/16,size=24"]  # fmt: skip
    with start(flags) as eng:
        addr = eng.in_netns("ip", "-4", "-o", "addr", "show", "skiff0", check=True).stdout
        assert "10.200.0.1/24" in addr
        assert eng.in_netns("nft", "list", "tables").stdout.strip() == ""
        eng.docker("network", "create", "pooled")
        cfg = json.loads(eng.docker("network", "inspect", "pooled").stdout)[0]["IPAM"]["Config"]
        assert cfg == [{"Subnet": "10.201.0.0/24", "Gateway": "10.201.0.1"}]
        # no rules: the userland proxy alone serves the published port on loopback
        eng.docker("run", "-d", "-p", "18400:80", "busybox", "sh", "-c", SERVER.format(port=80))
        assert tcp(eng, 18400) == "pong"
        out = eng.docker("run", "--rm", "busybox", "ip", "-4", "-o", "addr", "show", "eth0").stdout
        assert "10.200.0.2/24" in out or "10.200.0.3/24" in out


FAKE_DNS = """
import socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
print("ready", flush=True)
while True:
    q, peer = s.recvfrom(512)
    end = q.index(b"\\0", 12) + 5
    head = q[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
    answer = b"\\xc0\\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([10, 11, 12, 13])
    s.sendto(head + q[12:end] + answer, peer)
"""


def test_embedded_dns_forwards_to_the_containers_dns(net_engine: NetEngine) -> None:
    """--dns on a user network: the container asks 127.0.0.11, which forwards names that are
    not the network's to the given server (reached from the daemon's namespace, as Docker)."""
    eng = net_engine
    server = subprocess.Popen(
        ["ip", "netns", "exec", eng.netns, "python3", "-c", FAKE_DNS],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with networks(eng) as nets:
            net = uniq("dnsnet")
            nets.append(net)
            eng.docker("network", "create", net)
            out = eng.docker("run", "--rm", "--network", net, "--dns", "127.0.0.1", "busybox",
                             "sh", "-c", "cat /etc/resolv.conf; nslookup far.example.test").stdout  # fmt: skip
            assert "nameserver 127.0.0.11" in out and "ExtServers: [host(127.0.0.1)]" in out
            assert "10.11.12.13" in out, out
    finally:
        server.kill()
        server.wait()


def test_published_port_without_userland_proxy() -> None:
    """--userland-proxy=false: nothing listens on the host port; the nft rules alone
    answer it, on loopback too (route_localnet and a masquerade, as dockerd)."""
    from net_daemons import need_root_tools
    from net_daemons import net_engine as start

    why = need_root_tools()
    if why:
        pytest.skip(why)
    with start(["--userland-proxy=false"]) as eng:
        eng.docker("run", "-d", "-p", "18500:80", "busybox", "sh", "-c", SERVER.format(port=80))
        listening = eng.in_netns("ss", "-Htln", "sport = :18500").stdout
        assert listening.strip() == ""  # no proxy
        assert tcp(eng, 18500) == "pong"
        gw = eng.in_netns("ip", "-4", "-o", "addr", "show", "skiff0").stdout.split()[3]
        assert tcp(eng, 18500, gw.split("/")[0]) == "pong"
