"""Real daemons for the skiff CLI end-to-end tests: Debian's dockerd (and
docker-registry) on temporary roots, in a private mount namespace with tmpfs
over /run, /opt and /etc/docker so nothing reaches the host's system paths.

This sits at the Engine API boundary of DESIGN.md, seen from the client side:
`skiff` and the reference docker CLI both drive the same dockerd.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
SKIFF = str(REPO / ".venv" / "bin" / "skiff")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"

PRIVATE_NS_PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 cli-e2e-run /run; "
    "mount -t tmpfs -o mode=755 cli-e2e-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 cli-e2e-etc /etc/docker; fi; "
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_in_private_ns(argv: list[str], log: Path, netns: bool = False) -> subprocess.Popen[bytes]:
    """Start argv in a new mount namespace (and network namespace: bridges and addresses
    a test makes stay there); unshare and sh exec into argv."""
    script = PRIVATE_NS_PRELUDE + ("ip link set lo up; " if netns else "") + 'exec "$@"'
    unshare = ["unshare", "--mount", "--propagation", "private"] + (["--net"] if netns else [])
    with open(log, "ab") as out:
        return subprocess.Popen(
            [*unshare, "sh", "-c", script, "sh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    out = []
    for kid in children_of(pid):
        out.append(kid)
        out.extend(descendants(kid))
    return out


def unmount_under(d: Path) -> None:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(d) or target.startswith(f"{d}/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@dataclass
class Daemon:
    base: Path
    sock: Path
    proc: subprocess.Popen[bytes]
    log: Path
    registry_port: int
    tls_port: int = 0
    tls_dir: Path | None = None  # ca.pem, cert.pem, key.pem of a client the daemon trusts

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def env(self, config_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SKIFF_"))}
        env["DOCKER_HOST"] = self.host
        env["DOCKER_CONFIG"] = str(config_dir)
        env["SKIFF_CONFIG"] = str(config_dir)
        return env


def stop_process(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    tree = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def registry(base: Path) -> Iterator[tuple[int, subprocess.Popen[bytes] | None]]:
    binary = shutil.which("docker-registry")
    if binary is None:
        yield 0, None
        return
    port = free_port()
    config = base / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {base / 'registry'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    with open(base / "registry.log", "ab") as out:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            time.sleep(0.05)
        yield port, proc
    finally:
        stop_process(proc, grace=5)


@contextlib.contextmanager
def no_registry(base: Path) -> Iterator[tuple[int, None]]:
    yield 0, None


@contextlib.contextmanager
def dockerd(netns: bool = False) -> Iterator[Daemon]:
    """Debian's dockerd on a temporary root, with busybox loaded and a registry beside it;
    with netns, in a network namespace of its own (networks, no registry, no TCP)."""
    base = Path(tempfile.mkdtemp(prefix="skiff-cli-"))
    base.chmod(0o755)
    try:
        with (no_registry if netns else registry)(base) as (port, _):
            sock = base / "docker.sock"
            log = base / "dockerd.log"
            argv = [
                shutil.which("dockerd") or "dockerd",
                "--data-root", str(base / "data"),
                "--exec-root", str(base / "exec"),
                "--pidfile", str(base / "docker.pid"),
                "-H", f"unix://{sock}",
                "--bridge=none", "--iptables=false", "--ip6tables=false",
            ]  # fmt: skip
            if port:
                argv += ["--insecure-registry", f"127.0.0.1:{port}"]
            tls_port, tls_dir = 0, None
            if not netns and make_certs(base / "tls"):
                # mutual TLS on a second listener, for the TCP+TLS context tests
                tls_port, tls_dir = free_port(), base / "tls" / "client"
                t = base / "tls"
                argv += ["-H", f"tcp://127.0.0.1:{tls_port}", "--tlsverify",
                         "--tlscacert", str(t / "ca.pem"), "--tlscert", str(t / "server-cert.pem"),
                         "--tlskey", str(t / "server-key.pem")]  # fmt: skip
            proc = start_in_private_ns(argv, log, netns)
            daemon = Daemon(base, sock, proc, log, port, tls_port, tls_dir)
            try:
                wait_ready(daemon)
                if BUSYBOX_TAR.exists():
                    subprocess.run(
                        [DOCKER, "load", "-q", "-i", str(BUSYBOX_TAR)],
                        env=daemon.env(base / "docker-cli"), check=True, capture_output=True,
                    )  # fmt: skip
                yield daemon
            finally:
                stop_process(proc)
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def make_certs(d: Path) -> bool:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, by openssl."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    d.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=skiff e2e CA")  # fmt: skip
    for name, usage, cn in (
        ("server", "serverAuth", "127.0.0.1"),
        ("client", "clientAuth", "client"),
    ):
        (d / f"{name}.ext").write_text(
            f"extendedKeyUsage={usage}\n"
            + ("subjectAltName=IP:127.0.0.1\n" if name == "server" else "")
        )
        run("req", *ec, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{name}-cert.pem", "-days", "2", "-extfile", f"{name}.ext")  # fmt: skip
    client = d / "client"
    client.mkdir()
    shutil.copy(d / "ca.pem", client / "ca.pem")
    shutil.copy(d / "client-cert.pem", client / "cert.pem")
    shutil.copy(d / "client-key.pem", client / "key.pem")
    return True


@contextlib.contextmanager
def skiffd() -> Iterator[Daemon]:
    """skiffd (with its managed skiff-containerd) on a temporary root, busybox loaded."""
    base = Path(tempfile.mkdtemp(prefix="skiff-cli-"))
    base.chmod(0o755)
    try:
        with registry(base) as (port, _):
            sock = base / "skiff.sock"
            log = base / "skiffd.log"
            (base / "empty.json").write_text("{}")
            argv = [
                str(REPO / ".venv" / "bin" / "skiffd"),
                "-H", f"unix://{sock}",
                "--data-root", str(base / "data"),
                "--exec-root", str(base / "exec"),
                "--pidfile", str(base / "skiffd.pid"),
                "--config-file", str(base / "empty.json"),
                "--bridge=none",  # no bridge or nft table in the host's network namespace
            ]  # fmt: skip
            if port:
                argv += ["--insecure-registry", f"127.0.0.1:{port}"]
            # a second, mutual-TLS TCP listener, as the dockerd fixture has
            tls_port, tls_dir = 0, None
            if make_certs(base / "tls"):
                tls_port, tls_dir = free_port(), base / "tls" / "client"
                t = base / "tls"
                argv += ["-H", f"tcp://127.0.0.1:{tls_port}", "--tlsverify",
                         "--tlscacert", str(t / "ca.pem"), "--tlscert", str(t / "server-cert.pem"),
                         "--tlskey", str(t / "server-key.pem")]  # fmt: skip
            proc = start_in_private_ns(argv, log)
            daemon = Daemon(base, sock, proc, log, port, tls_port, tls_dir)
            try:
                wait_ready(daemon, timeout=90)
                subprocess.run(
                    [DOCKER, "load", "-q", "-i", str(BUSYBOX_TAR)],
                    env=daemon.env(base / "docker-cli"), check=True, capture_output=True,
                )  # fmt: skip
                yield daemon
            finally:
                stop_process(proc, grace=30)
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def wait_ready(daemon: Daemon, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    env = daemon.env(daemon.base / "docker-cli")
    while time.monotonic() < deadline:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"dockerd exited:\n{daemon.log.read_text()[-4000:]}")
        if daemon.sock.exists():
            r = subprocess.run([DOCKER, "version"], env=env, capture_output=True, timeout=10)
            if r.returncode == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"dockerd not ready in {timeout}s:\n{daemon.log.read_text()[-4000:]}")


if __name__ == "__main__":
    # A dockerd for working by hand: prints its DOCKER_HOST and waits for ctrl-c.
    with dockerd() as d:
        print(f"export DOCKER_HOST={d.host} REGISTRY=127.0.0.1:{d.registry_port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
