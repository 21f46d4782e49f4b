"""Real daemons for the image end-to-end tests: Debian's containerd 1.6 as the
supervisor and skiffd over it, each in a private mount namespace with tmpfs
over /run (containerd 1.6 writes under /run/containerd whatever its config
says), on temporary roots; Debian's docker-registry on 127.0.0.1.

This sits at the Engine API boundary of DESIGN.md: the real docker CLI and
docker-py drive skiffd, whose supervisor is the real containerd.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "integration" / "images"))

from registry_server import Registry, run_registry  # noqa: E402

BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
BUSYBOX_OCI = REPO / "build" / "images" / "busybox-oci"
SKIFFD = str(REPO / ".venv" / "bin" / "skiffd")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
CONTAINERD = shutil.which("containerd") or "/usr/bin/containerd"
CTR = shutil.which("ctr") or "/usr/bin/ctr"

PRIVATE_NS_PRELUDE = (
    "set -e; mount --make-rprivate /; mount -t tmpfs -o mode=755 images-e2e-run /run; "
)

__all__ = ["SUPERVISORS", "Registry", "Stack", "run_registry", "start_stack"]


def start_in_private_ns(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """argv in a new mount namespace with a private /run; its pid is the daemon's."""
    script = PRIVATE_NS_PRELUDE + 'exec "$@"'
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        kids.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    out: list[int] = []
    todo = [pid]
    while todo:
        for kid in kids.get(todo.pop(), []):
            out.append(kid)
            todo.append(kid)
    return out


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM by pid, then SIGKILL whatever it started that is left."""
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
    containerd_sock: Path
    skiffd_sock: Path
    supervisor: str = "containerd"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.skiffd_sock}",
            "DOCKER_CONFIG": str(self.base / "cli"),
        }
        env.pop("DOCKER_CONTEXT", None)
        return env

    def docker(
        self, *args: str, input: bytes | None = None, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        raw = subprocess.run(
            [DOCKER, *args], env=self.env, input=input, capture_output=True, timeout=timeout
        )
        result = subprocess.CompletedProcess(
            raw.args,
            raw.returncode,
            raw.stdout.decode(errors="replace"),
            raw.stderr.decode(errors="replace"),
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n{result.stderr}\n"
                f"skiffd log:\n{self.log('skiffd')[-3000:]}"
            )
        return result

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CTR, "--address", str(self.containerd_sock), "--namespace", "moby", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        try:
            return (self.base / f"{name}.log").read_text()
        except OSError:
            return ""


SKIFF_CONTAINERD = str(REPO / ".venv" / "bin" / "skiff-containerd")
SUPERVISORS = ("containerd", "skiff-containerd")


@contextlib.contextmanager
def start_stack(
    extra_args: list[str] | None = None, supervisor: str = "containerd"
) -> Iterator[Stack]:
    """skiffd over `supervisor`: Debian's containerd 1.6 or skiff-containerd."""
    if os.geteuid() != 0:
        pytest.skip("the image e2e tests start containerd and skiffd and need root")
    for binary in (CONTAINERD, CTR, DOCKER, SKIFFD):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed")
    base = Path(tempfile.mkdtemp(prefix="skiff-img-"))
    base.chmod(0o755)
    stack = Stack(base, base / "containerd.sock", base / "skiff.sock", supervisor)
    try:
        config = base / "containerd.toml"
        config.write_text(
            "version = 2\n"
            f'root = "{base}/containerd-root"\n'
            f'state = "{base}/containerd-state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            "[grpc]\n"
            f'  address = "{stack.containerd_sock}"\n'
            "[ttrpc]\n"
            f'  address = "{stack.containerd_sock}.ttrpc"\n'
            "[debug]\n"
            f'  address = ""\n'
            "[metrics]\n"
            '  address = ""\n'
        )
        clog = base / "containerd.log"
        if supervisor == "skiff-containerd":
            argv = [
                SKIFF_CONTAINERD,
                "--address", str(stack.containerd_sock),
                "--root", f"{base}/containerd-root",
                "--state", f"{base}/containerd-state",
            ]  # fmt: skip
        else:
            argv = [CONTAINERD, "--config", str(config)]
        stack.procs.append(start_in_private_ns(argv, clog))
        wait_for(stack.containerd_sock, stack.procs[0], clog)
        slog = base / "skiffd.log"
        (base / "daemon.json").write_text(json.dumps({}))
        argv = [
            SKIFFD,
            "-H", f"unix://{stack.skiffd_sock}",
            "--data-root", str(base / "skiffd-data"),
            "--exec-root", str(base / "skiffd-exec"),
            "--pidfile", str(base / "skiffd.pid"),
            "--config-file", str(base / "daemon.json"),
            "--containerd", str(stack.containerd_sock),
            "--bridge=none",  # no bridge or nft table in the host's network namespace
            *(extra_args or []),
        ]  # fmt: skip
        stack.procs.append(start_in_private_ns(argv, slog))
        wait_for(stack.skiffd_sock, stack.procs[1], slog)
        deadline = time.monotonic() + 30
        while stack.docker("version", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"skiffd does not answer:\n{slog.read_text()[-4000:]}")
            time.sleep(0.1)
        yield stack
    finally:
        for proc in reversed(stack.procs):
            stop(proc)
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
