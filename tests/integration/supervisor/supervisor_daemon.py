"""A skiff-containerd started for one test, with its own root, state,
socket and FIFO directory, and everything it leaves behind cleaned up:
tasks and shims (by pid), mounts under the temporary directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

REPO = Path(__file__).resolve().parents[3]
IMAGE_TAR = REPO / "build" / "images" / "busybox.tar"
IMAGE_OCI = REPO / "build" / "images" / "busybox-oci"
IMAGE = "docker.io/library/busybox:latest"
BIN = Path(sys.executable).parent
DAEMON = BIN / "skiff-containerd"
# which gRPC server the daemon runs ("h2" or "grpcio"); empty: its default
GRPC_SERVER = os.environ.get("SKIFF_TEST_GRPC_SERVER", "")


def require() -> None:
    if os.geteuid() != 0:
        pytest.skip("skiff-containerd integration tests need root (mounts, runc)")
    for tool in ("ctr", "runc", "containerd-shim-runc-v2"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install containerd runc)")
    if not IMAGE_TAR.exists():
        pytest.skip(f"{IMAGE_TAR} is missing: run `make images`")


def _pids_with(needle: str) -> list[int]:
    """Processes whose command line mentions our temporary directory: the
    shims this daemon started (each is given our socket path)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmd and int(entry) != os.getpid():
            out.append(int(entry))
    return out


class Supervisor:
    def __init__(self, tmp: Path, namespace: str = "default", grpc_server: str = "") -> None:
        self.tmp = tmp
        self.grpc_server = grpc_server or GRPC_SERVER
        self.address = str(tmp / "c.sock")
        self.root = tmp / "root"
        self.state = tmp / "state"
        self.fifo = tmp / "fifo"
        self.runc_root = tmp / "runc"
        self.namespace = namespace
        self.fifo.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / "daemon.log"

    # -- the daemon ----------------------------------------------------------------

    def start(self, *extra: str) -> None:
        if self.grpc_server:
            config = self.tmp / "config.toml"
            config.write_text(f'[grpc]\nserver = "{self.grpc_server}"\n')
            extra = ("--config", str(config), *extra)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(DAEMON),
                    "-a",
                    self.address,
                    "--root",
                    str(self.root),
                    "--state",
                    str(self.state),
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"skiff-containerd exited: {self.log.read_text()}")
            if os.path.exists(self.address):
                try:
                    with grpc.insecure_channel("unix:" + self.address) as ch:
                        grpc.channel_ready_future(ch).result(timeout=0.5)
                    return
                except grpc.FutureTimeoutError:
                    pass
            time.sleep(0.05)
        raise AssertionError(f"skiff-containerd did not come up: {self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel("unix:" + self.address)

    # -- ctr -----------------------------------------------------------------------

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 60, namespace: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["ctr", "-a", self.address, "-n", namespace or self.namespace, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
                f"\n--- daemon log ---\n{self.log.read_text()[-3000:]}"
            )
        return proc

    def run_args(self, runtime: str = "io.containerd.runc.v2") -> list[str]:
        args = ["run", "--fifo-dir", str(self.fifo), "--runtime", runtime]
        if runtime == "io.containerd.runc.v2":
            # keep runc's state out of /run/containerd
            args += ["--runc-root", str(self.runc_root)]
        return args

    def import_image(self) -> None:
        self.ctr("images", "import", str(IMAGE_TAR))

    def tasks(self) -> dict[str, tuple[int, str]]:
        out = {}
        for line in self.ctr("tasks", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) >= 3:
                out[parts[0]] = (int(parts[1]), parts[2])
        return out

    # -- clean-up ------------------------------------------------------------------

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            if self.proc is None:
                self.start()
            for ns in self.ctr("namespaces", "ls", "-q", check=False).stdout.split():
                ids = self.ctr("tasks", "ls", "-q", check=False, namespace=ns).stdout.split()

                def remove(cid: str, ns: str = ns) -> None:
                    self.ctr("tasks", "kill", "-s", "KILL", cid, check=False, namespace=ns)
                    self.ctr("tasks", "rm", "-f", cid, check=False, namespace=ns)
                    self.ctr("containers", "rm", cid, check=False, namespace=ns)

                with ThreadPoolExecutor(max_workers=6) as pool:
                    list(pool.map(remove, ids))
                for cid in self.ctr(
                    "containers", "ls", "-q", check=False, namespace=ns
                ).stdout.split():
                    self.ctr("containers", "rm", cid, check=False, namespace=ns)
        self.stop()
        # shims that outlived everything (a test that killed its daemon mid-way)
        for pid in _pids_with(self.address):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for target in sorted((m for m in mounts if m.startswith(str(self.tmp))), reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)
