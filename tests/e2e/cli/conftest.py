"""Fixtures of the skiff CLI e2e tests (defined in cli_daemons.py and cli_fixtures.py,
whose unique module names keep them apart from other suites' conftest modules)."""

from cli_fixtures import (
    both_daemons,
    config_dir,
    daemon,
    docker,
    net_daemon,
    other_daemon,
    skiff,
)

__all__ = ["both_daemons", "config_dir", "daemon", "docker", "net_daemon", "other_daemon", "skiff"]
