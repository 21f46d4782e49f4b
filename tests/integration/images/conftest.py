"""Fixtures for the image storage tests: temp content stores, both
snapshotters, and Debian's docker-registry on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from registry_server import Registry, run_registry

from skiff.containerd.content import ContentStore
from skiff.containerd.snapshots import SNAPSHOTTERS, Snapshotter

REPO = Path(__file__).resolve().parents[3]
BUSYBOX_OCI = REPO / "build" / "images" / "busybox-oci"
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.geteuid() != 0:
        for item in items:
            if "integration/images" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="needs root (mounts, chown, mknod)"))


def _mounts_under(path: str) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


@pytest.fixture
def tmp(tmp_path: Path) -> Iterator[Path]:
    """A temp dir whose leftover mounts are undone even when a test fails."""
    try:
        yield tmp_path
    finally:
        for target in sorted(_mounts_under(str(tmp_path)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], check=False)


@pytest.fixture
def store(tmp: Path) -> ContentStore:
    return ContentStore(str(tmp / "content"))


@pytest.fixture(params=sorted(SNAPSHOTTERS))
def snapshotter(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Snapshotter]:
    sn = SNAPSHOTTERS[request.param](str(tmp / f"snap-{request.param}"))
    try:
        yield sn
    finally:
        sn.close()


@pytest.fixture
def busybox_oci() -> Path:
    if not (BUSYBOX_OCI / "index.json").exists():
        pytest.skip("build/images/busybox-oci missing: run `make images`")
    return BUSYBOX_OCI


@pytest.fixture
def registry() -> Iterator[Registry]:
    with run_registry() as reg:
        yield reg


@pytest.fixture
def auth_registry() -> Iterator[Registry]:
    with run_registry(auth=True) as reg:
        yield reg


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
