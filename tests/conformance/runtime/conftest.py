"""Fixtures of the black-box OCI runtime conformance suite (see runtime_harness.py).

The suite drives the binary named by $RUNTIME (default: the repo's skiff-runc)
through its command line only; `RUNTIME=runc` checks the tests themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_harness import (
    IMAGE_LAYOUT,
    RUNTIME_BIN,
    Bundle,
    ConsoleReceiver,
    Runtime,
    extract_busybox_rootfs,
    mounts_mentioning,
    wait_for,
)


def pytest_report_header(config: pytest.Config) -> str:
    return f"OCI runtime under test: {RUNTIME_BIN}"


@pytest.fixture(scope="session", autouse=True)
def _require_root_and_runtime() -> None:
    if os.geteuid() != 0:
        pytest.skip("the runtime conformance suite needs root (namespaces, cgroups, mounts)")
    if not (os.path.isfile(RUNTIME_BIN) and os.access(RUNTIME_BIN, os.X_OK)):
        pytest.skip(f"runtime binary {RUNTIME_BIN!r} not found or not executable (set RUNTIME=)")


@pytest.fixture(scope="session")
def busybox_rootfs() -> Iterator[Path]:
    """The busybox image's rootfs, unpacked once per session."""
    if not (IMAGE_LAYOUT / "index.json").exists():
        pytest.skip(f"{IMAGE_LAYOUT} is missing: run `make images`")
    base = Path(tempfile.mkdtemp(prefix="conf-rootfs-"))
    rootfs = base / "rootfs"
    extract_busybox_rootfs(rootfs)
    yield rootfs
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short private temp dir (unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="conf-"))
    d.chmod(0o755)  # a user-namespaced root must be able to reach the bundle
    yield d
    for line in reversed(mounts_mentioning(str(d))):
        target = line.split()[4]
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def runtime(workdir: Path) -> Iterator[Runtime]:
    rt = Runtime(RUNTIME_BIN, workdir / "state", workdir)
    try:
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def make_bundle(workdir: Path, busybox_rootfs: Path) -> Callable[..., Bundle]:
    counter = iter(range(1000))

    def factory(*args: str) -> Bundle:
        return Bundle(workdir / f"bundle{next(counter)}", busybox_rootfs, list(args) or None)

    return factory


@pytest.fixture
def bundle(make_bundle: Callable[..., Bundle]) -> Bundle:
    b: Bundle = make_bundle()
    return b


@pytest.fixture
def console(workdir: Path) -> Iterator[ConsoleReceiver]:
    rec = ConsoleReceiver(workdir / "console.sock")
    try:
        yield rec
    finally:
        rec.close()


@pytest.fixture
def holder() -> Iterator[Callable[..., int]]:
    """Start `unshare <flags> sleep` processes whose namespaces containers can join."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> int:
        p = subprocess.Popen(["unshare", *flags, "sleep", "1000"])
        procs.append(p)
        # unshare execs sleep in the new namespaces; wait until it has.
        wait_for(lambda: Path(f"/proc/{p.pid}/comm").read_text().strip() == "sleep", what="unshare")
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def netns() -> Iterator[str]:
    """A named network namespace made with `ip netns add`, removed afterwards."""
    name = f"conf-{uuid.uuid4().hex[:8]}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"ip netns add failed: {res.stderr.strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
