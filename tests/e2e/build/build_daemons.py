"""Real daemons for the build end-to-end tests: a supervisor (Debian's
containerd 1.6 or skiff-containerd) in a private mount namespace with tmpfs
over /run and /opt, and skiffd entered into that namespace (nsenter), on
temporary roots, busybox loaded. RUN steps use our shim and skiff-runc
(`io.containerd.skiff.v1`) unless SKIFF_BUILD_RUNTIME says otherwise.

This sits at the Engine API boundary of DESIGN.md: the docker CLI and
docker-py drive skiffd's builder, whose supervisor is real.
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
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = REPO / ".venv" / "bin"
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
SUPERVISORS = ("containerd", "skiff-containerd")
# our shim (and skiff-runc under it) runs RUN steps unless told otherwise
RUNTIME = os.environ.get("SKIFF_BUILD_RUNTIME", "io.containerd.skiff.v1")

CONTAINERD_CONFIG = """\
version = 2
root = "{base}/ctd-root"
state = "{base}/ctd-state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/ctd-opt"
"""

PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 build-e2e-run /run; "
    "mount -t tmpfs -o mode=755 build-e2e-opt /opt; "
    'exec "$@"'
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def _ppids() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return out


def descendants(pids: list[int]) -> list[int]:
    parent = _ppids()
    kids: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        kids.setdefault(ppid, []).append(pid)
    out: list[int] = []
    todo = list(pids)
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def processes_naming(needle: str) -> list[int]:
    """Processes whose command line names `needle` (our shims carry the supervisor's socket)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmd:
            found.append(int(entry))
    return found


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


def unmount_under(d: Path) -> None:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(d) or target.startswith(f"{d}/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


@dataclass
class Stack:
    base: Path
    supervisor: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def containerd_sock(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def skiffd_sock(self) -> Path:
        return self.base / "skiff.sock"

    @property
    def host(self) -> str:
        return f"unix://{self.skiffd_sock}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_BUILDKIT="0")
        env["DOCKER_CONFIG"] = str(self.base / "cli")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120, cwd: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            [DOCKER, *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=cwd
        )
        if check and r.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}\n"
                f"skiffd log:\n{self.log('skiffd')[-3000:]}"
            )
        return r

    def log(self, name: str) -> str:
        try:
            return (self.base / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def start(self, skiffd_env: dict[str, str] | None = None) -> None:
        log = self.base / "containerd.log"
        if self.supervisor == "skiff-containerd":
            argv = [
                str(VENV_BIN / "skiff-containerd"),
                "--address", str(self.containerd_sock),
                "--root", f"{self.base}/ctd-root",
                "--state", f"{self.base}/ctd-state",
            ]  # fmt: skip
        else:
            config = self.base / "containerd.toml"
            config.write_text(CONTAINERD_CONFIG.format(base=self.base, sock=self.containerd_sock))
            argv = [shutil.which("containerd") or "/usr/bin/containerd", "--config", str(config)]
        with open(log, "ab") as out:
            sup = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRELUDE, "sh",
                 *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=_env(), start_new_session=True,
            )  # fmt: skip
        self.procs.append(sup)
        wait_for(self.containerd_sock, sup, log)
        self.start_skiffd(skiffd_env)

    def start_skiffd(self, skiffd_env: dict[str, str] | None = None) -> None:
        sup = self.procs[0]
        log = self.base / "skiffd.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                ["nsenter", f"--mount=/proc/{sup.pid}/ns/mnt", str(VENV_BIN / "skiffd"),
                 "-H", self.host, "--data-root", str(self.base / "data"),
                 "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "skiffd.pid"),
                 "--containerd", str(self.containerd_sock), "--bridge=none"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**_env(), **(skiffd_env or {})}, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        wait_for(self.skiffd_sock, proc, log)
        deadline = time.monotonic() + 30
        while not self._ping():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"skiffd does not answer:\n{self.log('skiffd')[-4000:]}")
            time.sleep(0.05)

    def stop_skiffd(self) -> None:
        proc = self.procs.pop()
        _stop(proc)
        with contextlib.suppress(FileNotFoundError):
            self.skiffd_sock.unlink()

    def _ping(self) -> bool:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.skiffd_sock))
            s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return b" 200 " in s.recv(1000)
        return False

    def stop(self) -> None:
        tree = descendants([p.pid for p in self.procs])
        for proc in reversed(self.procs):
            _stop(proc)
        for pid in [*tree, *processes_naming(str(self.base))]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def start_stack(supervisor: str, skiffd_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """skiffd over `supervisor` with busybox loaded; everything removed afterwards."""
    import pytest

    if os.geteuid() != 0:
        pytest.skip("the build e2e tests start a supervisor and skiffd and need root")
    for tool in ("unshare", "nsenter", DOCKER, "containerd"):
        if shutil.which(tool) is None and not os.path.exists(tool):
            pytest.skip(f"{tool} is not installed")
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")
    base = Path(tempfile.mkdtemp(prefix="skiff-build-"))
    base.chmod(0o755)
    stack = Stack(base, supervisor)
    try:
        stack.start(skiffd_env)
        stack.docker("load", "-i", str(BUSYBOX_TAR))
        yield stack
    except BaseException:
        print(f"--- skiffd.log ---\n{stack.log('skiffd')[-4000:]}")
        print(f"--- containerd.log ---\n{stack.log('containerd')[-4000:]}")
        raise
    finally:
        stack.stop()
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
