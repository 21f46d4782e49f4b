"""`skiff network create|rm|connect|disconnect|prune` and `skiff port` against Debian's
dockerd running in a network namespace of its own (its bridges and addresses never
reach the host), compared with the docker CLI on the same daemon; then skiffd, in a
network namespace of the test's own too (tests/e2e/network/net_daemons.py), driven by
the docker CLI through the same scenarios, must answer what dockerd answers: same
output, same errors, same addresses and MACs on the same subnets."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_daemons import DOCKER, SKIFF, Daemon
from cli_fixtures import Runner, require_root_and_images, runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "network"))

import net_daemons

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def name() -> str:
    return f"n{uuid.uuid4().hex[:8]}"


@pytest.fixture
def clis(net_daemon: Daemon, tmp_path: Path) -> tuple[Runner, Runner]:
    return runner(SKIFF, net_daemon, tmp_path / "s"), runner(DOCKER, net_daemon, tmp_path / "d")


def test_create_inspect_ls_rm(clis: tuple[Runner, Runner]) -> None:
    skiff, docker = clis
    a, b = name(), name()
    opts = ["--label", "team=net", "--label", "tier", "-o", "com.docker.network.driver.mtu=1400"]
    try:
        sid = ok(skiff("network", "create", "--subnet", "10.77.1.0/24", "--gateway", "10.77.1.254",
                       "--ip-range", "10.77.1.128/25", "--internal", *opts, a)).strip()  # fmt: skip
        ok(docker("network", "create", "--subnet", "10.77.2.0/24", "--gateway", "10.77.2.254",
                  "--ip-range", "10.77.2.128/25", "--internal", *opts, b))  # fmt: skip
        assert len(sid) == 64
        f = "{{.Driver}} {{.Internal}} {{json .Labels}} {{json .Options}} {{json .IPAM}}"
        s_out, d_out = (
            ok(skiff("network", "inspect", "-f", f, a)),
            ok(docker("network", "inspect", "-f", f, b)),
        )
        assert s_out == d_out.replace("10.77.2.", "10.77.1.")
        assert '"Gateway":"10.77.1.254"' in s_out and '"IPRange":"10.77.1.128/25"' in s_out
        for args in (["network", "ls"], ["network", "ls", "-q"], ["network", "ls", "--no-trunc"],
                     ["network", "ls", "--filter", "label=team=net", "--format",
                      'table {{.Name}}\t{{.Driver}}\t{{.Label "team"}}\t{{.Internal}}']):  # fmt: skip
            assert ok(skiff(*args)) == ok(docker(*args)), args
        # the docker CLI's own checks of the IPAM flags, and the daemon's refusals
        for args in (["--gateway", "10.9.9.1", name()],
                     ["--subnet", "10.78.0.0/24", "--gateway", "10.9.9.1", name()],
                     ["--subnet", "10.78.0.0/24", "--ip-range", "10.9.9.0/28", name()],
                     ["--subnet", "10.77.1.0/25", name()],  # overlaps a's pool
                     [a]):  # the name is taken  # fmt: skip
            s, d = skiff("network", "create", *args), docker("network", "create", *args)
            assert (s.returncode, s.stderr) == (d.returncode, d.stderr), args
            assert s.returncode != 0
        # rm prints each name; a missing one is an error, -f ignores it
        s, d = skiff("network", "rm", a, "no-such-net"), docker("network", "rm", b, "no-such-net")
        assert (s.returncode, s.stdout, s.stderr) == (
            d.returncode,
            f"{a}\n",
            d.stderr.replace(b, a),
        )
        assert ok(skiff("network", "rm", "-f", "no-such-net")) == ""
    finally:
        skiff("network", "rm", a, b)


def test_connect_disconnect_port(clis: tuple[Runner, Runner]) -> None:
    skiff, docker = clis
    first, net, c = name(), name(), name()
    try:
        # dockerd runs with --bridge=none: the container starts on a user network
        ok(skiff("network", "create", first))
        ok(skiff("network", "create", "--subnet", "10.79.0.0/24", net))
        ok(skiff("run", "-d", "--name", c, "--network", first, "-p", "127.0.0.1::80",
                 "-p", "8181:81/udp", "busybox", "sleep", "300"))  # fmt: skip
        ok(
            skiff(
                "network",
                "connect",
                "--ip",
                "10.79.0.50",
                "--alias",
                "web",
                "--alias",
                "www",
                net,
                c,
            )
        )
        f = f"{{{{json (index .NetworkSettings.Networks \"{net}\").Aliases}}}} " \
            f"{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"  # fmt: skip
        aliases, ip = ok(skiff("inspect", "-f", f, c)).split()
        assert ip == "10.79.0.50" and {"web", "www"} <= set(json.loads(aliases))
        # the address is really on an interface in the container
        assert "inet 10.79.0.50/24" in ok(skiff("exec", c, "ip", "addr"))
        for args in (["port", c], ["port", c, "80"], ["port", c, "81/udp"], ["port", c, "9999"]):
            s, d = skiff(*args), docker(*args)
            assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr), args
        s, d = skiff("network", "connect", net, c), docker("network", "connect", net, c)
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr) and s.returncode == 1
        ok(skiff("network", "disconnect", net, c))
        assert net not in ok(skiff("inspect", "-f", "{{json .NetworkSettings.Networks}}", c))
        s, d = skiff("network", "disconnect", net, c), docker("network", "disconnect", net, c)
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr) and s.returncode == 1
        ok(skiff("network", "connect", net, c))
        s, d = skiff("network", "rm", net), docker("network", "rm", net)
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr) and s.returncode == 1
        ok(skiff("network", "disconnect", "-f", net, c))
    finally:
        skiff("rm", "-f", c)
        skiff("network", "rm", net, first)


def test_prune(clis: tuple[Runner, Runner]) -> None:
    skiff, docker = clis
    nets = [name(), name()]
    try:
        for n in nets:
            ok(skiff("network", "create", "--label", "prune=me", n))
        out = ok(skiff("network", "prune", "-f", "--filter", "label=prune=me"))
        assert out.splitlines()[0] == "Deleted Networks:" and sorted(out.split()[2:]) == sorted(
            nets
        )
        assert out.endswith("\n\n")  # docker's blank line after the list
        assert ok(skiff("network", "prune", "-f")) == ok(docker("network", "prune", "-f")) == ""
    finally:
        skiff("network", "rm", "-f", *nets)


@pytest.fixture(scope="module")
def net_skiffd() -> Iterator[Daemon]:
    """skiffd with its default bridge, nft table and proxy in a network namespace of
    the test's own, seen as a cli_daemons.Daemon (its socket is all a client needs)."""
    require_root_and_images()
    why = net_daemons.need_root_tools()
    if why:
        pytest.skip(why)
    with net_daemons.net_engine() as eng:
        assert eng.skiffd is not None
        yield Daemon(eng.base, eng.sock, eng.skiffd, eng.base / "skiffd.log", 0)


@pytest.fixture
def pair(net_daemon: Daemon, net_skiffd: Daemon, tmp_path: Path) -> tuple[Runner, Runner, Runner]:
    """The docker CLI on skiffd, the docker CLI on dockerd, the skiff CLI on skiffd."""
    return (
        runner(DOCKER, net_skiffd, tmp_path / "s"),
        runner(DOCKER, net_daemon, tmp_path / "d"),
        runner(SKIFF, net_skiffd, tmp_path / "k"),
    )


def same(s: subprocess.CompletedProcess[str], d: subprocess.CompletedProcess[str]) -> None:
    assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr), s.args


def test_skiffd_create_inspect_ls_rm(pair: tuple[Runner, Runner, Runner]) -> None:
    on_s, on_d, skiff = pair
    a, plain = name(), name()
    create = ["network", "create", "--subnet", "10.77.3.0/24", "--gateway", "10.77.3.254",
              "--ip-range", "10.77.3.128/25", "--internal", "--label", "team=net",
              "--label", "tier", "-o", "com.docker.network.driver.mtu=1400", a]  # fmt: skip
    try:
        sid, did = ok(on_s(*create)).strip(), ok(on_d(*create)).strip()
        assert len(sid) == len(did) == 64
        f = ("{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Attachable}} {{.Ingress}} "
             "{{.EnableIPv6}} {{json .Labels}} {{json .Options}} {{json .IPAM}} "
             "{{json .Containers}} {{json .ConfigFrom}} {{.ConfigOnly}}")  # fmt: skip
        inspect = ["network", "inspect", "-f", f, a]
        same(on_s(*inspect), on_d(*inspect))
        # the skiff CLI reads the same (IPAM aside: its key order is the daemon's or Go's,
        # depending on the CLI's version)
        f_skiff = f.replace("{{json .IPAM}}", "{{.IPAM.Driver}}")
        assert ok(skiff("network", "inspect", "-f", f_skiff, a)) == ok(
            on_s("network", "inspect", "-f", f_skiff, a)
        )
        # every key dockerd (API 1.41) shows, skiffd shows
        (s_json,), (d_json,) = (json.loads(ok(x("network", "inspect", a))) for x in (on_s, on_d))
        assert set(d_json) <= set(s_json), set(d_json) - set(s_json)
        assert s_json["Id"] == sid
        # with no --subnet, a /16 of Docker's default pools with its .1 as gateway (which
        # one depends on what each daemon gave out before: dockerd does not reuse at once)
        ok(on_s("network", "create", plain))
        ok(on_d("network", "create", plain))
        for x in (on_s, on_d):
            (cfg,) = json.loads(ok(x("network", "inspect", "-f", "{{json .IPAM.Config}}", plain)))
            net = ipaddress.ip_network(cfg["Subnet"])
            assert net.prefixlen == 16 and net.subnet_of(ipaddress.ip_network("172.16.0.0/12"))
            assert cfg["Gateway"] == str(net.network_address + 1)
        for args in (
            # (.Labels comes out in Go's random map order: one .Label at a time)
            ["network", "ls", "--filter", "label=team=net", "--format",
             '{{.Name}} {{.Driver}} {{.Scope}} {{.Internal}} {{.Label "team"}}|{{.Label "tier"}}'],
            ["network", "ls", "--filter", f"name={a}", "--format", "{{.Name}}"],
            ["network", "ls", "--filter", "driver=null", "--format", "{{.Name}} {{len .ID}}"],
            ["network", "ls", "--filter", "type=custom", "--format", "{{.Name}}"],
        ):  # fmt: skip
            same(on_s(*args), on_d(*args))
        # the docker CLI's own checks of the IPAM flags, and the daemon's refusals
        for args in (["--gateway", "10.9.9.1", name()],
                     ["--subnet", "10.78.0.0/24", "--gateway", "10.9.9.1", name()],
                     ["--subnet", "10.78.0.0/24", "--ip-range", "10.9.9.0/28", name()],
                     ["--subnet", "10.77.3.0/25", name()],  # overlaps a's pool
                     [a]):  # the name is taken  # fmt: skip
            s, d = on_s("network", "create", *args), on_d("network", "create", *args)
            assert s.returncode != 0
            assert (s.returncode, s.stderr) == (d.returncode, d.stderr), args
        for args in (["network", "rm", a, "no-such-net"], ["network", "rm", "-f", "no-such-net"],
                     ["network", "rm", "none"]):  # fmt: skip
            same(on_s(*args), on_d(*args))
    finally:
        for x in (on_s, on_d):
            x("network", "rm", a, plain)


def connect_scenario(x: Runner, first: str, net: str, c: str) -> list[str]:
    """The steps of test_connect_disconnect_port on one daemon; what the CLI said."""
    seen: list[str] = []

    def log(r: subprocess.CompletedProcess[str]) -> str:
        # a port the daemon chose is the one thing that may differ; 0.0.0.0 and [::]
        # lines (dockerd publishes on both where the namespace has ::1) are compared
        out = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", r.stdout)
        err = re.sub(r"\b[0-9a-f]{64}\b", "ID", r.stderr)  # the container's id
        seen.append(f"{r.args[1:]} -> {r.returncode} {out!r} {err!r}")
        return r.stdout

    ok(x("network", "create", "--subnet", "10.80.0.0/24", first))
    ok(x("network", "create", "--subnet", "10.79.0.0/24", net))
    ok(x("run", "-d", "--name", c, "--network", first, "-p", "127.0.0.1::80",
         "-p", "8181:81/udp", "-p", "8182:82", "busybox", "sleep", "300"))  # fmt: skip
    log(x("network", "connect", "--ip", "10.79.0.50", "--alias", "web", "--alias", "www", net, c))
    f = (f'{{{{json (index .NetworkSettings.Networks "{net}").Aliases}}}} '
         f'{{{{(index .NetworkSettings.Networks "{net}").IPAddress}}}} '
         f'{{{{(index .NetworkSettings.Networks "{net}").MacAddress}}}} '
         f'{{{{(index .NetworkSettings.Networks "{first}").IPAddress}}}}')  # fmt: skip
    aliases, *rest = ok(x("inspect", "-f", f, c)).split()
    # dockerd 20.10 (API 1.41) adds the short id to Aliases; newer APIs keep it in DNSNames
    seen.append(f"aliases {sorted(set(json.loads(aliases)) & {'web', 'www'})} {rest}")
    addrs = ok(x("exec", c, "ip", "-o", "addr"))
    seen.append(" ".join(sorted(re.findall(r"inet [\d./]+", addrs))))
    links = ok(x("exec", c, "ip", "-o", "link"))
    seen.append(" ".join(sorted(re.findall(r"link/ether [\da-f:]+", links))))
    for args in (["port", c], ["port", c, "80"], ["port", c, "81/udp"], ["port", c, "82"],
                 ["port", c, "9999"]):  # fmt: skip
        log(x(*args))
    log(x("ps", "--filter", f"name={c}", "--format", "{{.Ports}}"))
    log(x("network", "connect", net, c))
    log(x("network", "disconnect", net, c))
    seen.append(ok(x("inspect", "-f", "{{len .NetworkSettings.Networks}}", c)))
    log(x("network", "disconnect", net, c))
    log(x("network", "connect", net, c))
    log(x("network", "rm", net))
    log(x("network", "disconnect", "-f", net, c))
    log(x("rm", "-f", c))
    log(x("network", "rm", net, first))
    return seen


def test_skiffd_connect_disconnect_port(pair: tuple[Runner, Runner, Runner]) -> None:
    on_s, on_d, _ = pair
    first, net, c = name(), name(), name()
    try:
        theirs = connect_scenario(on_d, first, net, c)
        ours = connect_scenario(on_s, first, net, c)
        assert ours == theirs
    finally:
        for x in (on_s, on_d):
            x("rm", "-f", c)
            x("network", "rm", net, first)


def test_skiffd_prune(pair: tuple[Runner, Runner, Runner]) -> None:
    on_s, on_d, skiff = pair
    nets = [name(), name()]
    try:
        outs = []
        for x in (on_s, on_d):
            for n in nets:
                ok(x("network", "create", "--label", "prune=me", n))
            out = ok(x("network", "prune", "-f", "--filter", "label=prune=me"))
            lines = out.splitlines()
            outs.append((lines[0], sorted(lines[1:-1]), out.endswith("\n\n")))
            outs.append(ok(x("network", "prune", "-f")))
        assert outs[0] == outs[2] == ("Deleted Networks:", sorted(nets), True)
        assert outs[1] == outs[3] == ""
        assert ok(skiff("network", "prune", "-f")) == ""
    finally:
        for x in (on_s, on_d):
            x("network", "rm", "-f", *nets)
