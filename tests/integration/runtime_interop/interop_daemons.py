"""Helpers and fixtures for the runtime interop tests: real daemons (Debian's dockerd and
containerd) on temporary roots that run containers through the OCI runtime
under test (skiff-runc by default; $RUNTIME picks another, e.g. runc).

These sit at the OCI runtime CLI boundary of DESIGN.md, seen from above.
Each daemon runs in a private mount namespace with tmpfs over /run, /opt and
/etc/docker, so nothing it or its shims write (containerd 1.6 puts shim sockets
and FIFOs under /run/containerd) reaches the host's system paths.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"


def runtime_binary() -> str:
    name = os.environ.get("RUNTIME", "")
    if not name:
        return str(REPO / ".venv" / "bin" / "skiff-runc")
    if os.sep in name:
        return str(Path(name).resolve())
    return shutil.which(name) or name


@pytest.fixture(scope="session")
def runtime_bin() -> str:
    path = runtime_binary()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.skip(f"runtime binary {path!r} not found (set RUNTIME=)")
    return path


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")
    return BUSYBOX_TAR


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A short temp dir (unix sockets) that is unmounted and removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("the interop tests start real daemons and need root")
    d = Path(tempfile.mkdtemp(prefix="interop-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        unmount_under(d)
        shutil.rmtree(d, ignore_errors=True)


def unmount_under(d: Path) -> None:
    """Unmount, deepest first, whatever a daemon left mounted under d."""
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(d) or target.startswith(f"{d}/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


PRIVATE_NS_PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 interop-run /run; "
    "mount -t tmpfs -o mode=755 interop-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 interop-etc /etc/docker; fi; "
)


def start_in_private_ns(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start argv in a new mount namespace with private /run, /opt, /etc/docker.

    unshare and sh exec into argv, so the returned Popen's pid is the daemon's.
    """
    script = PRIVATE_NS_PRELUDE + 'exec "$@"'
    with open(log, "ab") as out:
        return subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv],
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


def stop_daemon(proc: subprocess.Popen[bytes], extra_pids: list[int], grace: float = 15.0) -> None:
    """SIGTERM the daemon by pid, then SIGKILL what is left of the processes it started."""
    tree = descendants(proc.pid)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pid in [*tree, *extra_pids]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for_socket(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear in {timeout}s:\n{log.read_text()[-4000:]}")
