"""A supervisor core (metadata, content, snapshotters, exchange) in a
temporary directory, for service tests without a socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.containerd.content import ContentStore
from skiff.containerd.events import Exchange
from skiff.containerd.metadata.db import Metadata
from skiff.containerd.metadata.snapshots import NamespacedSnapshotter
from skiff.containerd.services.context import request_context
from skiff.containerd.services.core import Core
from skiff.containerd.snapshots import NativeSnapshotter, OverlaySnapshotter


@pytest.fixture
def core(tmp_path: Path) -> Iterator[Core]:
    meta = Metadata(str(tmp_path / "meta" / "meta.db"))
    c = Core(
        meta,
        ContentStore(str(tmp_path / "content")),
        {
            "overlayfs": NamespacedSnapshotter(
                "overlayfs", OverlaySnapshotter(str(tmp_path / "ov"))
            ),
            "native": NamespacedSnapshotter("native", NativeSnapshotter(str(tmp_path / "nat"))),
        },
        Exchange(),
    )
    yield c
    meta.close()


@pytest.fixture
def ns_default() -> Iterator[None]:
    with request_context("default"):
        yield
