"""Fixtures for the skiff-shim integration tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from shim_containerd import IMAGE_TAR, Containerd, require


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    require()
    runtime = os.environ.get("RUNTIME", "runc")
    tmp = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))
    cd = Containerd(tmp, runtime)
    try:
        cd.start()
        cd.ctr("images", "import", str(IMAGE_TAR))
        yield cd
    finally:
        cd.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)
