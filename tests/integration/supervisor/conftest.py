"""Fixtures for the skiff-containerd integration tests (root, Debian's ctr)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor_daemon import Supervisor, require


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    require()
    tmp = Path(tempfile.mkdtemp(prefix="skc", dir="/tmp"))
    sup = Supervisor(tmp)
    try:
        sup.start()
        yield sup
    finally:
        sup.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
