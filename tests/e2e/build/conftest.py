"""Fixtures for the builder tests: Debian's containerd on temporary paths
(the helpers of the skiff-ctr suite), busybox imported into `moby`."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "ctr"))

from ctr_daemons import BUSYBOX_TAR, containerd, ctr_base

__all__ = ["containerd", "ctr_base", "moby"]


@pytest.fixture(scope="module")
def moby(containerd):  # type: ignore[no-untyped-def]
    from skiff.containerd.client import images as cimages
    from skiff.containerd.client.core import Client

    client = Client(containerd.address, "moby")
    client.wait_ready()
    with open(BUSYBOX_TAR, "rb") as f:
        imported = cimages.import_archive(client, f)
    names = [i if isinstance(i, str) else i.name for i in imported]
    yield client, names
    client.close()


@pytest.fixture
def outdir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
