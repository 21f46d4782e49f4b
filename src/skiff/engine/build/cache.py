"""The build cache: step key -> the intermediate image the step produced.

A key is the digest of (parent image id, the step as Docker records it in
history, its build-arg environment, the content digests of COPY/ADD
sources). Entries are small JSON files under `<data-root>/build/cache/`,
written atomically, so the cache survives restarts; the blobs and snapshots
they name are kept alive in the supervisor by a `containerd.io/gc.root`
label on each entry's manifest (see builder.py), which prune takes away.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def step_key(parent: str, created_by: str, extra: Sequence[str] = ()) -> str:
    h = hashlib.sha256()
    for part in (parent, created_by, *extra):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(slots=True, kw_only=True)
class Entry:
    key: str
    parent: str  # the parent image id
    description: str  # the step, as history records it
    image_id: str  # config digest of the resulting image
    manifest: str  # digest of its manifest blob (the gc root)
    config: dict[str, Any]  # the image config JSON
    layers: list[dict[str, Any]]  # OCI descriptors (mediaType, digest, size)
    size: int = 0  # bytes of the layer this step added
    manifest_size: int = 0  # 0 in entries written before it was recorded
    created: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    usage_count: int = 0


class BuildCache:
    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "cache")
        os.makedirs(self.dir, exist_ok=True)
        # snapshot chains seen to exist since this process started: a gc.root
        # manifest holds them, so a warm build need not ask the supervisor again
        # (forgotten on prune)
        self.verified: set[str] = set()

    def _path(self, key: str) -> str:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError(f"invalid cache key {key!r}")
        return os.path.join(self.dir, key + ".json")

    def get(self, key: str) -> Entry | None:
        try:
            with open(self._path(key)) as f:
                data = json.load(f)
        except (FileNotFoundError, ValueError):
            return None
        try:
            return Entry(**data)
        except TypeError:
            return None  # written by an incompatible version: a miss

    def put(self, entry: Entry) -> None:
        self._write(entry)

    def touch(self, entry: Entry) -> None:
        """Record a use; not fsynced (the time only orders prune)."""
        entry.last_used = time.time()
        entry.usage_count += 1
        self._write(entry, sync=False)

    def _write(self, entry: Entry, *, sync: bool = True) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(asdict(entry), f)
                if sync:
                    f.flush()
                    os.fsync(f.fileno())
            os.rename(tmp, self._path(entry.key))
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def remove(self, key: str) -> None:
        self.verified.clear()
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def entries(self) -> Iterator[Entry]:
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json") and not name.startswith("."):
                entry = self.get(name[:-5])
                if entry is not None:
                    yield entry

    def disk_usage(self) -> list[dict[str, Any]]:
        """The BuildCache records of GET /system/df."""
        out = []
        for e in self.entries():
            out.append(
                {
                    "ID": e.key[:25],
                    "Parent": e.parent,
                    "Type": "regular",
                    "Description": e.description,
                    "InUse": False,
                    "Shared": False,
                    "Size": e.size,
                    "CreatedAt": _rfc3339(e.created),
                    "LastUsedAt": _rfc3339(e.last_used),
                    "UsageCount": e.usage_count,
                }
            )
        return out


def _rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"
