"""Fixtures of the runtime interop tests (defined in interop_daemons.py, whose
unique module name keeps them apart from other suites' conftest modules)."""

from interop_daemons import base_dir, busybox_tar, runtime_bin

__all__ = ["base_dir", "busybox_tar", "runtime_bin"]
