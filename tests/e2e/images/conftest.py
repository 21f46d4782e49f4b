"""Fixtures of the image e2e tests (defined in images_daemons.py, whose unique
module name keeps them apart from other suites' conftest modules)."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from images_daemons import (
    BUSYBOX_TAR,
    SUPERVISORS,
    Registry,
    Stack,
    run_registry,
    start_stack,
)


@pytest.fixture(params=SUPERVISORS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    """A supervisor (Debian's containerd, then skiff-containerd) and skiffd over
    it on temporary roots, stopped and removed afterwards."""
    with start_stack(supervisor=request.param) as s:
        yield s


@pytest.fixture
def registry() -> Iterator[Registry]:
    with run_registry() as r:
        yield r


@pytest.fixture(scope="session")
def busybox_tar() -> Path:
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")
    return BUSYBOX_TAR


@pytest.fixture(scope="session")
def busybox_id(busybox_tar: Path) -> str:
    """The image ID (config digest) the archive's manifest.json names."""
    with tarfile.open(busybox_tar) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        entries = json.load(member)
    return "sha256:" + entries[0]["Config"].rsplit("/", 1)[-1]
