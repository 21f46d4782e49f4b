"""Fixtures for the network layer's integration tests (helpers in netlib_helpers.py).

Every test runs in a network namespace it made: the `host` fixture moves the
test's main thread into a fresh namespace (so the NetworkManager, the `nft`
and `ip` it runs, and its threads all live there) and always moves it back and
deletes the namespace. "Containers" are `unshare --net sleep` processes.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from netlib_helpers import Container, FakeResolver, Host, _require

from skiff.engine.network.netns import CLONE_NEWNET, current_netns_inode
from skiff.runtime import linux


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    _require()
    name = f"skiff-t-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    path = f"/run/netns/{name}"
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    root_inode = os.fstat(orig).st_ino
    h = Host(name, path, tmp_path / "state")
    resolver: FakeResolver | None = None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            linux.setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        assert current_netns_inode() == os.stat(path).st_ino != root_inode
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        h.state_dir.mkdir()
        (h.state_dir / "host-resolv.conf").write_text(
            "nameserver 127.0.0.1\nnameserver 192.0.2.53\nsearch example.test\n"
        )
        resolver = FakeResolver()
        h.upstream_port = resolver.port
        yield h
    finally:
        for mgr in h.managers:
            try:
                mgr.close()
            except Exception:
                pass
        for proc in h.procs:
            proc.kill()
            proc.wait()
        if resolver is not None:
            resolver.sock.close()
        linux.setns(orig, CLONE_NEWNET)
        os.close(orig)
        assert current_netns_inode() == root_inode
        subprocess.run(["ip", "netns", "del", name], check=False)
        # (/sys shows the root namespace): none of the test's bridges reached it
        made = {h.bridge} | {n.bridge for m in h.managers for n in m.store.networks.values()}
        leaked = [b for b in made if b and os.path.exists(f"/sys/class/net/{b}")]
        assert not leaked, f"bridges in the root namespace: {leaked}"


@pytest.fixture
def outside(host: Host) -> Iterator[Container]:
    """Another machine on the 'host's' link: 10.99.0.2, the host being 10.99.0.1."""
    c = host.container()
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            "ext0",
            "type",
            "veth",
            "peer",
            "name",
            "ext1",
            "netns",
            str(c.proc.pid),
        ],
        check=True,
    )
    subprocess.run(["ip", "addr", "add", "10.99.0.1/24", "dev", "ext0"], check=True)
    subprocess.run(["ip", "link", "set", "ext0", "up"], check=True)
    for cmd in (
        ["ip", "addr", "add", "10.99.0.2/24", "dev", "ext1"],
        ["ip", "link", "set", "ext1", "up"],
        ["ip", "link", "set", "lo", "up"],
    ):
        r = c.run(*cmd)
        assert r.returncode == 0, r.stderr
    return c
