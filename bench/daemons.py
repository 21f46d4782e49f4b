"""Daemons for the side-by-side benchmarks, each in namespaces the benchmark makes.

skiffd (with its managed skiff-containerd) and Debian's dockerd (with its own
containerd) start on temporary roots in a private mount namespace (tmpfs over
/run, /opt and /etc/docker, so nothing reaches the host's system paths) and,
with netns=True, in a network namespace of their own: bridges, addresses,
nftables/iptables rules and published ports stay there and go away with it.
The docker CLI reaches each daemon through its unix socket, which crosses
network namespaces; clients that need the daemon's network enter it with
`in_netns` or `nsenter --net=<Daemon.netns>`.

Everything is removed on exit, even on failure: the daemon and every process
below it by PID (which ends the network namespace), the mounts under the root
and the root itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
SKIFFD = str(REPO / ".venv" / "bin" / "skiffd")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"

PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 bench-run /run; "
    "mount -t tmpfs -o mode=755 bench-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 bench-etc /etc/docker; fi; "
)

CLONE_NEWNET = 0x40000000
T = TypeVar("T")


@dataclass
class Daemon:
    name: str
    base: Path
    sock: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def netns(self) -> str:
        # unshare and sh exec into the daemon: its PID holds the namespaces
        return f"/proc/{self.proc.pid}/ns/net"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        env["DOCKER_HOST"] = f"unix://{self.sock}"
        env["DOCKER_CONFIG"] = str(self.base / f"{self.name}-cli")
        return env

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [DOCKER, *args], env=self.env(), capture_output=True, timeout=timeout, check=False
        )

    def must(self, *args: str, timeout: float = 120) -> str:
        r = self.docker(*args, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.decode()}")
        return r.stdout.decode()

    def nsenter(self, *argv: str) -> None:
        """Run a command (ip, sysctl) in the daemon's network namespace."""
        subprocess.run(["nsenter", f"--net={self.netns}", *argv], check=True, capture_output=True)


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def stop(proc: subprocess.Popen[bytes], grace: float = 30) -> None:
    """SIGTERM the daemon, then SIGKILL whatever it started that is still there (shims,
    containers, docker-proxy): only PIDs below the one this module started."""
    tree = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in [*tree, *(d for p in tree for d in descendants(p))]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def unmount_under(d: Path) -> None:
    targets = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4] == str(d) or line.split()[4].startswith(f"{d}/")
    ]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@contextlib.contextmanager
def start(
    name: str, argv: list[str], base: Path, sock: Path, netns: bool = True, timeout: float = 90
) -> Iterator[Daemon]:
    log = base / f"{name}.log"
    script = PRELUDE + ("ip link set lo up; " if netns else "") + 'exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private", *(["--net"] if netns else [])]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*unshare, "sh", "-c", script, "sh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    daemon = Daemon(name, base, sock, proc, log)
    try:
        deadline = time.monotonic() + timeout
        while not sock.exists() or daemon.docker("version", timeout=20).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield daemon
    finally:
        stop(proc)


def empty_config(base: Path) -> Path:
    path = base / "empty-daemon.json"
    path.write_text("{}")
    return path


@contextlib.contextmanager
def skiffd(base: Path, netns: bool = True, extra: list[str] | None = None) -> Iterator[Daemon]:
    sock = base / "skiff.sock"
    argv = [
        SKIFFD,
        "-H", f"unix://{sock}",
        "--data-root", f"{base}/skiffd-data",
        "--exec-root", f"{base}/skiffd-exec",
        "--pidfile", f"{base}/skiffd.pid",
        "--config-file", str(empty_config(base)),
        *(extra or []),
    ]  # fmt: skip
    with start("skiffd", argv, base, sock, netns) as d:
        yield d


@contextlib.contextmanager
def dockerd(base: Path, netns: bool = True, extra: list[str] | None = None) -> Iterator[Daemon]:
    """Debian's dockerd with its own containerd; its default bridge, iptables rules and
    docker-proxy unless extra says otherwise (they live in its network namespace)."""
    sock = base / "docker.sock"
    argv = [
        DOCKERD,
        "-H", f"unix://{sock}",
        "--data-root", f"{base}/dockerd-data",
        "--exec-root", f"{base}/dockerd-exec",
        "--pidfile", f"{base}/dockerd.pid",
        "--config-file", str(empty_config(base)),
        *(extra or []),
    ]  # fmt: skip
    with start("dockerd", argv, base, sock, netns) as d:
        yield d


def in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call fn in a short-lived thread that joined the network namespace at path (a
    namespace belongs to a thread; the rest of this process stays where it is); sockets
    it opens stay in that namespace."""
    from skiff.runtime import linux

    box: dict[str, object] = {}
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def body() -> None:
        try:
            linux.setns(fd, CLONE_NEWNET)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    try:
        t = threading.Thread(target=body, daemon=True)
        t.start()
        t.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@contextlib.contextmanager
def outside(
    daemon: Daemon, host_ip: str = "10.98.0.1", peer_ip: str = "10.98.0.2"
) -> Iterator[str]:
    """A second namespace, "another machine", on a veth to the daemon's namespace
    (peer_ip there, host_ip on the daemon's side); yields the path of its namespace.
    Traffic from it to host_ip:PORT takes the DNAT path of a published port."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "3600"], start_new_session=True)
    path = f"/proc/{proc.pid}/ns/net"
    try:
        mine = os.stat("/proc/thread-self/ns/net").st_ino
        deadline = time.monotonic() + 10
        while os.stat(path).st_ino == mine:
            if time.monotonic() > deadline:
                raise RuntimeError("unshare --net did not start")
            time.sleep(0.005)
        daemon.nsenter(
            "ip", "link", "add", "bxo0", "type", "veth", "peer", "name", "bxo1",
            "netns", str(proc.pid),
        )  # fmt: skip
        daemon.nsenter("ip", "addr", "add", f"{host_ip}/24", "dev", "bxo0")
        daemon.nsenter("ip", "link", "set", "bxo0", "up")
        for cmd in (
            ["ip", "addr", "add", f"{peer_ip}/24", "dev", "bxo1"],
            ["ip", "link", "set", "bxo1", "up"],
            ["ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(["nsenter", f"--net={path}", *cmd], check=True, capture_output=True)
        yield path
    finally:
        # the veth pair goes with the namespace of its peer
        proc.kill()
        proc.wait()
