"""`skiff network create|rm|connect|disconnect|prune` and `skiff port` against Debian's
dockerd running in a network namespace of its own (its bridges and addresses never
reach the host), compared with the docker CLI on the same daemon; and against skiffd,
whose /networks endpoints create nothing yet: both clients must report that alike."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from cli_daemons import DOCKER, SKIFF, Daemon
from cli_fixtures import Runner, runner

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


def test_against_skiffd(both_daemons: Daemon, tmp_path: Path) -> None:
    """skiffd lists its built-in networks; creating is refused alike for both clients."""
    skiff = runner(SKIFF, both_daemons, tmp_path / "s")
    docker = runner(DOCKER, both_daemons, tmp_path / "d")
    if both_daemons.sock.name == "docker.sock":
        pytest.skip("covered against dockerd in its own netns by the tests above")
    n = name()
    s, d = skiff("network", "create", n), docker("network", "create", n)
    assert (s.returncode, s.stderr) == (d.returncode, d.stderr)
    if s.returncode == 0:  # skiffd gained /networks/create: the networks work end to end
        ok(skiff("network", "rm", n))
    for args in (["network", "ls"], ["network", "inspect", "-f", "{{.Name}} {{.Driver}}", "none"]):
        assert ok(skiff(*args)) == ok(docker(*args))
    s, d = skiff("network", "rm", "no-such-net"), docker("network", "rm", "no-such-net")
    assert (s.returncode, s.stderr) == (d.returncode, d.stderr)
