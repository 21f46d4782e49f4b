"""Fixtures of the engine e2e tests (defined here over engine_daemons.py, whose unique
module name keeps them apart from other suites' helper modules)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from engine_daemons import BUSYBOX_TAR, Engine, cleanup_base, load_busybox, new_base


def _need() -> None:
    if os.geteuid() != 0:
        pytest.skip("the engine e2e tests start containerd and skiffd and need root")
    for tool in ("containerd", "docker", "unshare", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    if not BUSYBOX_TAR.exists():
        pytest.skip(f"{BUSYBOX_TAR} is missing: run `make images`")


def _engine() -> Iterator[Engine]:
    _need()
    base = new_base()
    eng = Engine(base)
    try:
        # ENGINE_SUPERVISOR=skiff: skiffd over its own managed skiff-containerd
        if os.environ.get("ENGINE_SUPERVISOR") == "skiff":
            eng.start_holder()
        else:
            eng.start_containerd()
        eng.start_skiffd()
        load_busybox(eng)
        yield eng
    except BaseException:
        print(eng.log_tail())
        raise
    finally:
        eng.stop()
        cleanup_base(base)


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """containerd + skiffd shared by the tests that only add and remove their own containers."""
    yield from _engine()


@pytest.fixture
def own_engine() -> Iterator[Engine]:
    """A private containerd + skiffd for tests that kill or restart the daemon."""
    yield from _engine()


@pytest.fixture
def managed_engine() -> Iterator[Engine]:
    """skiffd with the skiff-containerd it starts and manages itself."""
    _need()
    base = new_base()
    eng = Engine(base)
    try:
        eng.start_holder()
        eng.start_skiffd()
        load_busybox(eng)
        yield eng
    except BaseException:
        print(eng.log_tail())
        raise
    finally:
        eng.stop()
        cleanup_base(base)
