"""containerd.services.diff.v1: apply a layer blob onto mounts (unpack), and
write the difference between two mounts as a layer blob (commit)."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from skiff.containerd.metadata.db import Resource
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core
from skiff.containerd.snapshots import Mount, mount_all, unmount
from skiff.errors import AlreadyExists, InvalidArgument, NotFound, NotImplemented_
from skiff.oci import mediatypes as mt

UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
_LAYER_TYPES = mt.LAYERS


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _mounted(mounts: Sequence[Mount], readonly: bool = False) -> Iterator[str]:
    if (
        not readonly
        and len(mounts) == 1
        and mounts[0].type == "bind"
        and "ro" not in mounts[0].options
    ):
        yield mounts[0].source  # a plain directory: no need to mount it
        return
    target = tempfile.mkdtemp(prefix="skiff-diff-")
    try:
        if readonly:
            mounts = [
                Mount(type=m.type, source=m.source, options=(*m.options, "ro"), target=m.target)
                for m in mounts
            ]
        mount_all(mounts, target)
        try:
            yield target
        finally:
            unmount(target, detach=True)
    finally:
        os.rmdir(target)


class DiffService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def apply(self, desc: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        ns = required_namespace()
        if desc.media_type not in _LAYER_TYPES:
            raise NotImplemented_(f"unsupported layer media type {desc.media_type!r}")
        self.core.meta.get_content(ns, desc.digest)
        if not mounts:
            raise InvalidArgument("apply needs at least one mount")
        # loaded on first use: the layer codecs (bz2, lzma, zstd) cost an
        # idle daemon about 2 MB
        from skiff.image.layer import apply_layer

        with self.core.content.open(desc.digest) as blob, _mounted(mounts) as target:
            result = apply_layer(target, blob)
        return Descriptor(media_type=mt.OCI_LAYER, digest=str(result.diff_id), size=result.size)

    def diff(
        self,
        left: Sequence[Mount],
        right: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        ns = required_namespace()
        media_type = media_type or mt.OCI_LAYER_GZIP
        if media_type not in (mt.OCI_LAYER, mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP):
            raise NotImplemented_(f"unsupported diff media type {media_type!r}")
        compress = media_type != mt.OCI_LAYER
        from skiff.image.layer import tree_changes, write_layer

        ref = ref or f"diff-{secrets.token_hex(8)}"
        with contextlib.ExitStack() as stack:
            lower = stack.enter_context(_mounted(left, readonly=True)) if left else None
            upper = stack.enter_context(_mounted(right, readonly=True))
            w = self.core.content.writer(f"{ns}/{ref}")
            with w:
                w.truncate(0)
                result = write_layer(tree_changes(lower, upper), w, compress=compress)
                all_labels = dict(labels or {})
                all_labels[UNCOMPRESSED_LABEL] = str(result.diff_id)
                with self.core.meta.lock:
                    try:
                        digest = str(w.commit(result.size, result.digest))
                    except AlreadyExists:
                        digest = str(result.digest)
                    self.core.meta.add_content(ns, digest, all_labels)
                    self.core.lease_add(ns, Resource(digest, "content"))
        return Descriptor(media_type=media_type, digest=digest, size=result.size)


__all__ = ["Descriptor", "DiffService", "NotFound"]
