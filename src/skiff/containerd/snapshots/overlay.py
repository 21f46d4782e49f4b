"""The `overlayfs` snapshotter (skiff-containerd's default): each snapshot
holds only its own changes; an active snapshot mounts as an overlay of its
parents' directories with its own as the upper layer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from skiff.containerd.snapshots.base import Kind, Snapshotter, _Row
from skiff.image.mount import Mount


class OverlaySnapshotter(Snapshotter):
    name = "overlayfs"

    def _make(self, kind: Kind, snap_id: int, parent_ids: Sequence[int]) -> None:
        os.mkdir(self.fs_of(snap_id), 0o755)
        if kind == Kind.ACTIVE:
            os.mkdir(os.path.join(self.dir_of(snap_id), "work"), 0o711)

    def _mounts(self, row: _Row, chain: Sequence[_Row]) -> list[Mount]:
        if not chain:
            # nothing below: the directory itself
            ro = "ro" if row.kind == Kind.VIEW else "rw"
            return [Mount(type="bind", source=self.fs_of(row.id), options=(ro, "rbind"))]
        lowers = [self.fs_of(r.id) for r in chain]
        if row.kind == Kind.VIEW:
            if len(lowers) == 1:
                return [Mount(type="bind", source=lowers[0], options=("ro", "rbind"))]
            return [
                Mount(type="overlay", source="overlay", options=("lowerdir=" + ":".join(lowers),))
            ]
        return [
            Mount(
                type="overlay",
                source="overlay",
                options=(
                    "index=off",
                    f"workdir={os.path.join(self.dir_of(row.id), 'work')}",
                    f"upperdir={self.fs_of(row.id)}",
                    "lowerdir=" + ":".join(lowers),
                ),
            )
        ]

    def upper_dir(self, key: str) -> str:
        """The directory holding an active snapshot's own changes (for diff)."""
        with self._lock:
            return self.fs_of(self._row(key).id)

    def parent_key(self, key: str) -> str:
        with self._lock:
            return self._row(key).parent
