"""Fixtures of the build e2e tests: one stack (supervisor + skiffd, busybox
loaded) per supervisor for the whole session, every test run over both
(Debian's containerd, then skiff-containerd); a supervisor client in `moby`
for the tests that drive the builder directly. Helpers live in
build_daemons.py, whose unique module name keeps them apart from other
suites' helper modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from build_daemons import RUNTIME, SUPERVISORS, Stack, start_stack


@pytest.fixture(scope="session", params=SUPERVISORS)
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    with start_stack(request.param, {"SKIFF_BUILD_RUNTIME": RUNTIME}) as s:
        yield s


@pytest.fixture(scope="session")
def moby(stack: Stack) -> Iterator[tuple[Any, Stack]]:
    from skiff.containerd.client.core import Client

    client = Client(str(stack.containerd_sock), "moby")
    client.wait_ready()
    try:
        yield client, stack
    finally:
        client.close()
