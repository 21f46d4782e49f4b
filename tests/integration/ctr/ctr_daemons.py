"""Debian's containerd 1.6 (and a docker-registry) on temporary paths, for the
skiff-ctr tests: the client side of the containerd API seen against the real
daemon. containerd runs in a private mount namespace with tmpfs over /run and
/opt (it writes shim sockets under /run/containerd whatever its config says);
skiff-ctr's FIFOs live in the test's temp dir, which both namespaces share.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
BUSYBOX_OCI = REPO / "build" / "images" / "busybox-oci"
SKIFF_CTR = [sys.executable, "-m", "skiff.containerd.ctr"]

CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""

_PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 ctr-run /run; "
    "mount -t tmpfs -o mode=755 ctr-opt /opt; "
)


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _shim_pids(address: str) -> list[int]:
    """Shims started by our containerd (they carry its -address); they outlive it."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if address.encode() in cmd and any(b"containerd-shim" in c for c in cmd[:1]):
            out.append(int(entry))
    return out


def unmount_under(d: Path) -> None:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(d) or target.startswith(f"{d}/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


class Containerd:
    """Debian's containerd on its own root, state, socket and config."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.address = str(base / "c.sock")
        self.log = base / "containerd.log"
        config = base / "config.toml"
        config.write_text(
            CONFIG.format(
                root=base / "root", state=base / "state", sock=self.address, opt=base / "opt"
            )
        )
        script = _PRELUDE + 'exec "$@"'
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                 "containerd", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 20
        while not os.path.exists(self.address):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"containerd did not start:\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        tree = _descendants(self.proc.pid) + _shim_pids(self.address)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in tree + _shim_pids(self.address):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


REGISTRY_CONFIG = """\
version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class Registry:
    """Debian's docker-registry on 127.0.0.1 with a temporary store."""

    def __init__(self, base: Path) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = base / "registry.yml"
        config.write_text(REGISTRY_CONFIG.format(root=base / "registry", port=self.port))
        self.log = base / "registry.log"
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                ["docker-registry", "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"docker-registry did not start:\n{self.log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def need_root_and_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("the skiff-ctr integration tests start containerd and need root")
    for tool in ("containerd", "unshare", *tools):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")


@pytest.fixture(scope="module")
def ctr_base() -> Iterator[Path]:
    need_root_and_tools("containerd-shim-runc-v2", "runc")
    d = Path(tempfile.mkdtemp(prefix="ctr-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def containerd(ctr_base: Path) -> Iterator[Containerd]:
    daemon = Containerd(ctr_base)
    try:
        yield daemon
    finally:
        daemon.stop()
        unmount_under(ctr_base)


@pytest.fixture(scope="module")
def registry(ctr_base: Path) -> Iterator[Registry]:
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed")
    reg = Registry(ctr_base)
    try:
        yield reg
    finally:
        reg.stop()
