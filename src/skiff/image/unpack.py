"""Unpack an image into a snapshot chain, one committed snapshot per layer
named by its ChainID (so images sharing layers share snapshots). Image
layer: the content store and snapshotter come in by duck typing from
skiff-containerd, which sits above.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator, Sequence
from typing import Any, BinaryIO, Protocol

from skiff.errors import FailedPrecondition, InvalidArgument, NotFound
from skiff.image.layer import apply_layer
from skiff.image.mount import Mount, mount_all, unmount
from skiff.oci.digest import Digest
from skiff.oci.image import Image, Manifest, chain_ids


class SnapshotterLike(Protocol):
    def prepare(self, key: str, parent: str = "", labels: Any = None) -> list[Mount]: ...
    def commit(self, name: str, key: str, labels: Any = None) -> None: ...
    def remove(self, key: str) -> None: ...
    def stat(self, key: str) -> Any: ...


class ContentLike(Protocol):
    def open(self, digest: Digest | str) -> BinaryIO: ...


@contextlib.contextmanager
def mounted(mounts: Sequence[Mount]) -> Iterator[str]:
    """A directory showing `mounts`; a plain read-write bind needs no mount."""
    if len(mounts) == 1 and mounts[0].type == "bind" and "ro" not in mounts[0].options:
        yield mounts[0].source
        return
    target = tempfile.mkdtemp(prefix="skiff-mount-")
    try:
        mount_all(mounts, target)
        try:
            yield target
        finally:
            unmount(target)
    finally:
        os.rmdir(target)


def apply_into(
    snapshotter: SnapshotterLike,
    parent: str,
    chain_id: Digest,
    blob: BinaryIO,
    diff_id: Digest,
) -> None:
    """Apply one layer on `parent` and commit it as `chain_id`; a failed or
    mismatching apply leaves no snapshot behind."""
    key = f"extract-{secrets.token_hex(6)} {chain_id}"
    mounts = snapshotter.prepare(key, parent, {"containerd.io/snapshot.ref": str(chain_id)})
    try:
        with mounted(mounts) as target:
            # the blob's digest is verified (content store commit) before
            # this snapshot is, and the DiffID below: gzip's CRC adds nothing
            result = apply_layer(target, blob, check_crc=False)
        if result.diff_id != diff_id:
            raise FailedPrecondition(
                f"layer diff id mismatch: got {result.diff_id}, config says {diff_id}"
            )
        snapshotter.commit(str(chain_id), key)
    except BaseException:
        with contextlib.suppress(NotFound):
            snapshotter.remove(key)
        raise


def has_snapshot(snapshotter: SnapshotterLike, key: str) -> bool:
    try:
        snapshotter.stat(key)
        return True
    except NotFound:
        return False


def unpack(
    content: ContentLike,
    snapshotter: SnapshotterLike,
    manifest: Manifest,
    config: Image,
    *,
    on_layer: Callable[[int, Digest], None] | None = None,
) -> Digest | None:
    """Unpack every layer not already unpacked; returns the top ChainID
    (None for an image without layers)."""
    diff_ids = list(config.rootfs.diff_ids)
    if len(diff_ids) != len(manifest.layers):
        raise InvalidArgument(
            f"image has {len(manifest.layers)} layers but {len(diff_ids)} diff ids"
        )
    chain = chain_ids(diff_ids)
    for i, layer in enumerate(manifest.layers):
        if has_snapshot(snapshotter, str(chain[i])):
            continue
        with content.open(layer.digest) as blob:
            apply_into(snapshotter, str(chain[i - 1]) if i else "", chain[i], blob, diff_ids[i])
        if on_layer is not None:
            on_layer(i, chain[i])
    return chain[-1] if chain else None
