"""pytest fixtures for the skiff CLI e2e tests: one dockerd per session, a fresh
config directory per test, and runners for `skiff` and the reference `docker`
CLI pointed at the same daemon."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_daemons import BUSYBOX_TAR, DOCKER, SKIFF, Daemon, dockerd, skiffd

Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def daemon() -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("the CLI e2e tests start Debian's dockerd and need root")
    for binary in ("dockerd", "unshare"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")
    # SKIFF_E2E_DAEMON=skiffd runs the same scenarios against skiffd instead
    which = os.environ.get("SKIFF_E2E_DAEMON", "dockerd")
    with skiffd() if which == "skiffd" else dockerd() as d:
        yield d


def require_root_and_images() -> None:
    if os.geteuid() != 0:
        pytest.skip("the CLI e2e tests start real daemons and need root")
    for binary in ("dockerd", "unshare"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed")
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")


@pytest.fixture(scope="session")
def other_daemon(daemon: Daemon) -> Iterator[Daemon]:
    """The daemon `daemon` is not: skiffd when the session runs on dockerd, and back."""
    which = os.environ.get("SKIFF_E2E_DAEMON", "dockerd")
    with dockerd() if which == "skiffd" else skiffd() as d:
        yield d


@pytest.fixture(scope="session", params=["dockerd", "skiffd"])
def both_daemons(request: pytest.FixtureRequest, daemon: Daemon) -> Daemon:
    """Each test that takes it runs against Debian's dockerd and against skiffd."""
    which = os.environ.get("SKIFF_E2E_DAEMON", "dockerd")
    if request.param == which:
        return daemon
    other: Daemon = request.getfixturevalue("other_daemon")
    return other


@pytest.fixture(scope="session")
def net_daemon() -> Iterator[Daemon]:
    """Debian's dockerd in a network namespace of its own: `network create` makes real
    bridges and addresses, which must not appear on the host."""
    require_root_and_images()
    with dockerd(netns=True) as d:
        yield d


@pytest.fixture
def config_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="skiff-cli-config-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def runner(binary: str, daemon: Daemon, config_dir: Path) -> Runner:
    def run(*args: str, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        e = daemon.env(config_dir)
        e.update(env or {})
        return subprocess.run([binary, *args], input=input, env=e, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip

    return run


@pytest.fixture
def skiff(daemon: Daemon, config_dir: Path) -> Runner:
    return runner(SKIFF, daemon, config_dir)


@pytest.fixture
def docker(daemon: Daemon, config_dir: Path) -> Runner:
    return runner(DOCKER, daemon, config_dir / "docker")


def skiff_bytes(daemon: Daemon, config_dir: Path, *args: str) -> bytes:
    """Run skiff for binary output (save, export, cp to -) and return its stdout."""
    r = subprocess.run([SKIFF, *args], env=daemon.env(config_dir), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout
