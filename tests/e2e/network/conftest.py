"""Fixtures of the networking e2e tests: skiffd in a network namespace of the test's
own (see net_daemons.py for what it sets up and how it cleans up).

- `net_engine` (session): one skiffd shared by tests that only add and remove
  their own containers and networks (name them uniquely, remove them after).
- `own_net_engine` (function): a private skiffd, for tests that restart or kill it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from net_daemons import NetEngine, need_root_tools
from net_daemons import net_engine as _net_engine


def _skip_if_unable() -> None:
    why = need_root_tools()
    if why:
        pytest.skip(why)


@pytest.fixture(scope="session")
def net_engine() -> Iterator[NetEngine]:
    _skip_if_unable()
    with _net_engine() as eng:
        yield eng


@pytest.fixture
def own_net_engine() -> Iterator[NetEngine]:
    _skip_if_unable()
    with _net_engine() as eng:
        yield eng
