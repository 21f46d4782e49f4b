"""Compute a layer from an active snapshot's changes (for commit and
build): the overlay snapshotter's upper directory holds exactly the
changes; a native snapshot is compared with its parent tree by tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from skiff.containerd.snapshots.native import NativeSnapshotter
from skiff.containerd.snapshots.overlay import OverlaySnapshotter
from skiff.errors import InvalidArgument
from skiff.image.layer import Change, DiffResult, overlay_changes, tree_changes, write_layer


def changes(snapshotter: Any, key: str) -> Iterator[Change]:
    if isinstance(snapshotter, OverlaySnapshotter):
        return overlay_changes(snapshotter.upper_dir(key))
    if isinstance(snapshotter, NativeSnapshotter):
        parent = snapshotter.parent_key(key)
        lower = snapshotter.snapshot_dir(parent) if parent else None
        return tree_changes(lower, snapshotter.snapshot_dir(key))
    raise InvalidArgument(f"cannot diff snapshots of {type(snapshotter).__name__}")


def diff(snapshotter: Any, key: str, out: Any, *, compress: bool = True) -> DiffResult:
    """Write the changes of snapshot `key` over its parent as a tar layer."""
    return write_layer(changes(snapshotter, key), out, compress=compress)
