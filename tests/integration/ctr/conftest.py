"""Fixtures of the skiff-ctr integration tests (defined in ctr_daemons.py, a
uniquely named module so they never collide with another suite's helpers)."""

from ctr_daemons import containerd, ctr_base, registry

__all__ = ["containerd", "ctr_base", "registry"]
