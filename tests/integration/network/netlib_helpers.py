"""Helpers of the network layer's integration tests (the fixtures over them are in
conftest.py; tests import from this module, whose name is unique in the suite, never from
`conftest`, which names several modules once tests/unit is collected too).

Every test runs in a network namespace it made: the `host` fixture moves the
test's main thread into a fresh namespace (so the NetworkManager, the `nft`
and `ip` it runs, and its threads all live there) and always moves it back and
deletes the namespace. "Containers" are `unshare --net sleep` processes.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from skiff.engine.network import NetworkManager
from skiff.engine.network.netns import current_netns_inode, run_in_netns

BUSYBOX = "/bin/busybox"


def _require() -> None:
    if os.geteuid() != 0:
        pytest.skip("network tests need root (netns, netlink, nftables)")
    for tool in ("ip", "nft", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"network tests need {tool} (apt: iproute2, nftables, util-linux)")


@dataclass
class Host:
    """The test's stand-in for the host: a namespace the test owns."""

    name: str
    path: str
    state_dir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    managers: list[NetworkManager] = field(default_factory=list)
    upstream_port: int = 0
    bridge: str = field(default_factory=lambda: "skt" + secrets.token_hex(4))

    def manager(self, **kw: object) -> NetworkManager:
        kw.setdefault("dns_upstreams", [("127.0.0.1", self.upstream_port)])
        kw.setdefault("host_resolv_conf", str(self.state_dir / "host-resolv.conf"))
        # unique, so the check that nothing reached the real host means something
        kw.setdefault("bridge_name", self.bridge)
        mgr = NetworkManager(self.state_dir, **kw)  # type: ignore[arg-type]
        self.managers.append(mgr)
        mgr.start()
        return mgr

    def container(self) -> Container:
        """A process in a network namespace of its own."""
        proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
        self.procs.append(proc)
        path = f"/proc/{proc.pid}/ns/net"
        mine = current_netns_inode()
        deadline = time.monotonic() + 5
        while os.stat(path).st_ino == mine:
            if time.monotonic() > deadline:
                raise RuntimeError("unshare did not make a namespace")
            time.sleep(0.002)
        return Container(proc, path, secrets.token_hex(32))


@dataclass
class Container:
    proc: subprocess.Popen[bytes]
    netns: str
    id: str

    def run(self, *argv: str, timeout: float = 10) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["nsenter", f"--net={self.netns}", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def ping(self, ip: str) -> bool:
        return self.run(BUSYBOX, "ping", "-c", "1", "-W", "1", ip).returncode == 0

    def inside(self, fn: Callable[[], object]) -> object:
        return run_in_netns(self.netns, fn)

    def serve_echo(self, proto: str, port: int) -> EchoServer:
        sock = run_in_netns(self.netns, lambda: _bound(proto, "0.0.0.0", port))
        return EchoServer(sock, proto)

    def connect(self, ip: str, port: int, timeout: float = 2.0) -> socket.socket:
        def go() -> socket.socket:
            return socket.create_connection((ip, port), timeout=timeout)

        return run_in_netns(self.netns, go)


def _bound(proto: str, ip: str, port: int) -> socket.socket:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    if proto == "tcp":
        s.listen(16)
    return s


class EchoServer:
    """Echoes, prefixed with the peer's address, so a test sees who connected."""

    def __init__(self, sock: socket.socket, proto: str) -> None:
        self.sock = sock
        self.proto = proto
        self.peers: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                if self.proto == "udp":
                    data, addr = self.sock.recvfrom(65536)
                    if addr is None:  # shut down
                        return
                    self.peers.append(addr[0])
                    self.sock.sendto(addr[0].encode() + b" " + data, addr)
                    continue
                conn, addr = self.sock.accept()
                self.peers.append(addr[0])
                with conn:
                    data = conn.recv(65536)
                    conn.sendall(addr[0].encode() + b" " + data)
        except OSError:
            return

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def tcp_exchange(sock: socket.socket, data: bytes) -> bytes:
    with sock:
        sock.sendall(data)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def udp_exchange(ip: str, port: int, data: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.settimeout(2)
        s.sendto(data, (ip, port))
        return s.recv(65536)


class FakeResolver:
    """The 'host's resolver' on 127.0.0.1 of the test namespace: every A is 10.1.2.3."""

    def __init__(self) -> None:
        from skiff.engine.network import dns

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked: list[str] = []
        self._dns = dns
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        dns = self._dns
        try:
            while True:
                data, addr = self.sock.recvfrom(4096)
                q = dns.parse_query(data)
                self.asked.append(q.question.name)
                ans = [(dns.TYPE_A, bytes([10, 1, 2, 3]))] if q.question.qtype == dns.TYPE_A else []
                self.sock.sendto(dns.build_answer(q, dns.RCODE_OK, ans), addr)
        except OSError:
            return
