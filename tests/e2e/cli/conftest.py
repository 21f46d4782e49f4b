"""Fixtures of the skiff CLI e2e tests (defined in cli_daemons.py and cli_fixtures.py,
whose unique module names keep them apart from other suites' conftest modules)."""

from cli_fixtures import config_dir, daemon, docker, skiff

__all__ = ["config_dir", "daemon", "docker", "skiff"]
