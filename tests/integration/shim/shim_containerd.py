"""Debian's containerd 1.6 in a temporary root, with skiff-shim as runtime io.containerd.skiff.v1.

Shared by the shim integration tests (the fixture itself is in conftest.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
IMAGE_TAR = REPO / "build" / "images" / "busybox.tar"
IMAGE = "docker.io/library/busybox:latest"
VENV_BIN = Path(sys.executable).parent
RUNTIME = "io.containerd.skiff.v1"

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
  address = "{address}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""


def require() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run containers")
    for tool in ("containerd", "ctr"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install containerd)")
    if not IMAGE_TAR.exists():
        pytest.skip(f"{IMAGE_TAR} is missing (run `make images`)")
    if not (VENV_BIN / "containerd-shim-skiff-v1").exists():
        pytest.skip("containerd-shim-skiff-v1 is not installed in the venv (pip install -e .)")


class Containerd:
    """A running containerd with its own root, state, socket and config."""

    def __init__(self, tmp: Path, runtime_binary: str) -> None:
        self.tmp = tmp
        self.address = str(tmp / "c.sock")
        self.fifo_dir = tmp / "fifo"
        self.config = tmp / "config.toml"
        self.config.write_text(
            CONFIG.format(
                root=tmp / "root", state=tmp / "state", address=self.address, opt=tmp / "opt"
            )
        )
        self.env = dict(os.environ)
        # containerd finds containerd-shim-skiff-v1 on its PATH; the shim inherits the env
        self.env["PATH"] = f"{VENV_BIN}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"
        self.env["SKIFF_SHIM_RUNTIME"] = runtime_binary
        self.namespace = "skiff-test"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = open(tmp / "containerd.log", "ab")  # noqa: SIM115

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(self.config), "--log-level", "debug"],
            stdout=self.log,
            stderr=self.log,
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited: {self.logs()[-2000:]}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("containerd did not come up")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def logs(self) -> str:
        return (self.tmp / "containerd.log").read_text(errors="replace")

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60, input: bytes | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", self.address, "--namespace", self.namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            input=input.decode() if input is not None else None,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"ctr {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                f"{result.stderr}\n--- containerd log tail ---\n{self.logs()[-3000:]}"
            )
        return result

    def run_args(self, *extra: str) -> list[str]:
        return ["run", "--runtime", RUNTIME, "--fifo-dir", str(self.fifo_dir), *extra]

    def shim_pids(self) -> list[int]:
        """Pids of skiff shims serving this containerd (their -address is ours)."""
        return processes_of(self.address, b"containerd-shim-skiff-v1")

    def template_pids(self) -> list[int]:
        """Pids of the shim template of this containerd (skiff.shim.template)."""
        return processes_of(self.address, b"skiff-shim-template")

    def cleanup(self) -> None:
        """Kill every task, delete containers, stop the daemon and shims, unmount."""
        if self.proc is None or self.proc.poll() is not None:
            try:
                self.start()
            except RuntimeError:
                pass
        if self.proc is not None:
            tasks = self.ctr("task", "ls", "-q", check=False).stdout.split()
            for t in tasks:
                self.ctr("task", "kill", "-s", "SIGKILL", t, check=False)
            for t in tasks:
                self.ctr("task", "rm", "-f", t, check=False, timeout=20)
            for c in self.ctr("container", "ls", "-q", check=False).stdout.split():
                self.ctr("container", "rm", c, check=False)
        self.stop()
        for pid in self.shim_pids() + self.template_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _unmount_under(self.tmp)
        self.log.close()


def processes_of(address: str, name: bytes) -> list[int]:
    """Pids whose command line names the program name (argv[0] or the script) and address."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if address.encode() in cmdline and any(name in c for c in cmdline[:2]):
            pids.append(int(entry))
    return pids


def _unmount_under(root: Path) -> None:
    prefix = str(root)
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
