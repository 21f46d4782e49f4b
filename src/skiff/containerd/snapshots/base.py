"""What every skiff-containerd snapshotter shares: containerd's model of
snapshots (active, view and committed kinds, parents by key), kept in an
SQLite file beside the snapshot directories::

    root/metadata.db            rows: key, id, kind, parent, labels, usage
    root/snapshots/<id>/fs      the snapshot's files (short numeric paths)
    root/snapshots/<id>/work    overlay's work directory

Subclasses say how a snapshot is made from its parents and how it mounts.
"""

from __future__ import annotations

import enum
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from skiff.image.mount import Mount


class Kind(enum.IntEnum):
    # numbers as in containerd's snapshots API
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    name: str
    parent: str
    kind: Kind
    created_at: float
    updated_at: float
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Usage:
    size: int
    inodes: int


@dataclass(frozen=True, slots=True)
class _Row:
    key: str
    id: int
    kind: Kind
    parent: str
    created: float
    updated: float
    labels: dict[str, str]
    size: int
    inodes: int


_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    key TEXT PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    kind INTEGER NOT NULL,
    parent TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    labels TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT -1,
    inodes INTEGER NOT NULL DEFAULT -1
);
CREATE TABLE IF NOT EXISTS ids (next INTEGER NOT NULL);
"""


def disk_usage(path: str) -> Usage:
    """Bytes on disk and inodes below `path`, each hard-linked inode once."""
    seen: set[tuple[int, int]] = set()
    size = inodes = 0
    stack = [path]
    while stack:
        cur = stack.pop()
        with os.scandir(cur) as it:
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                inodes += 1
                size += st.st_blocks * 512
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    return Usage(size, inodes)


class Snapshotter:
    """Base of `overlayfs` and `native`; thread-safe, one instance per root."""

    name = "base"

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.snapshots_dir = os.path.join(self.root, "snapshots")
        os.makedirs(self.snapshots_dir, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            os.path.join(self.root, "metadata.db"), check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        if self._db.execute("SELECT COUNT(*) FROM ids").fetchone()[0] == 0:
            self._db.execute("INSERT INTO ids VALUES (1)")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- rows --------------------------------------------------------------

    def _row(self, key: str) -> _Row:
        r = self._db.execute("SELECT * FROM snapshots WHERE key = ?", (key,)).fetchone()
        if r is None:
            raise NotFound(f"snapshot {key}: not found")
        return _Row(r[0], r[1], Kind(r[2]), r[3], r[4], r[5], json.loads(r[6]), r[7], r[8])

    def _chain(self, parent: str) -> list[_Row]:
        """The parent and its ancestors, nearest first."""
        out: list[_Row] = []
        while parent:
            row = self._row(parent)
            out.append(row)
            parent = row.parent
        return out

    def dir_of(self, snap_id: int) -> str:
        return os.path.join(self.snapshots_dir, str(snap_id))

    def fs_of(self, snap_id: int) -> str:
        return os.path.join(self.dir_of(snap_id), "fs")

    # -- the containerd model ----------------------------------------------

    def prepare(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.ACTIVE, key, parent, labels)

    def view(
        self, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        return self._create(Kind.VIEW, key, parent, labels)

    def _create(
        self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        if not key:
            raise InvalidArgument("snapshot key must not be empty")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (key,)).fetchone():
                    raise AlreadyExists(f"snapshot {key}: already exists")
                chain = self._chain(parent) if parent else []
                if chain and chain[0].kind != Kind.COMMITTED:
                    raise FailedPrecondition(f"parent {parent} is not a committed snapshot")
                snap_id = self._db.execute("SELECT next FROM ids").fetchone()[0]
                self._db.execute("UPDATE ids SET next = next + 1")
                now = time.time()
                self._db.execute(
                    "INSERT INTO snapshots (key, id, kind, parent, created, updated, labels)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (key, snap_id, int(kind), parent, now, now, json.dumps(dict(labels or {}))),
                )
                path = self.dir_of(snap_id)
                if os.path.exists(path):
                    shutil.rmtree(path)  # left by a crash before its row was written
                os.makedirs(path)
                try:
                    self._make(kind, snap_id, [r.id for r in chain])
                except BaseException:
                    shutil.rmtree(path, ignore_errors=True)
                    raise
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return self._mounts(self._row(key), chain)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            row = self._row(key)
            if row.kind == Kind.COMMITTED:
                raise FailedPrecondition(f"snapshot {key} is committed: view or prepare it")
            return self._mounts(row, self._chain(row.parent))

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        with self._lock:
            row = self._row(key)
            if row.kind != Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key} is not active")
            usage = self._usage_of(row)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if self._db.execute("SELECT 1 FROM snapshots WHERE key = ?", (name,)).fetchone():
                    raise AlreadyExists(f"snapshot {name}: already exists")
                merged = dict(row.labels)
                merged.update(labels or {})
                self._db.execute(
                    "UPDATE snapshots SET key = ?, kind = ?, updated = ?, labels = ?, size = ?,"
                    " inodes = ? WHERE key = ?",
                    (
                        name,
                        int(Kind.COMMITTED),
                        time.time(),
                        json.dumps(merged),
                        usage.size,
                        usage.inodes,
                        key,
                    ),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def remove(self, key: str) -> None:
        with self._lock:
            row = self._row(key)
            if self._db.execute("SELECT 1 FROM snapshots WHERE parent = ?", (key,)).fetchone():
                raise FailedPrecondition(f"snapshot {key} has children: remove them first")
            doomed = os.path.join(self.snapshots_dir, f"rm-{row.id}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM snapshots WHERE key = ?", (key,))
                if os.path.exists(self.dir_of(row.id)):
                    os.rename(self.dir_of(row.id), doomed)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        shutil.rmtree(doomed, ignore_errors=True)

    def stat(self, key: str) -> Info:
        with self._lock:
            return self._info(self._row(key))

    def update(self, key: str, labels: Mapping[str, str]) -> Info:
        with self._lock:
            self._row(key)
            self._db.execute(
                "UPDATE snapshots SET labels = ?, updated = ? WHERE key = ?",
                (json.dumps(dict(labels)), time.time(), key),
            )
            return self._info(self._row(key))

    def walk(self) -> Iterator[Info]:
        with self._lock:
            keys = [r[0] for r in self._db.execute("SELECT key FROM snapshots ORDER BY id")]
            infos = [self._info(self._row(k)) for k in keys]
        yield from infos

    def usage(self, key: str) -> Usage:
        with self._lock:
            row = self._row(key)
        if row.kind == Kind.COMMITTED and row.size >= 0:
            return Usage(row.size, row.inodes)
        return self._usage_of(row)

    def cleanup(self) -> list[str]:
        """Remove directories no row owns (left by a crash); returns them."""
        with self._lock:
            ids = {str(r[0]) for r in self._db.execute("SELECT id FROM snapshots")}
            removed = []
            for name in os.listdir(self.snapshots_dir):
                if name not in ids:
                    shutil.rmtree(os.path.join(self.snapshots_dir, name), ignore_errors=True)
                    removed.append(name)
            return removed

    def _info(self, row: _Row) -> Info:
        return Info(
            name=row.key,
            parent=row.parent,
            kind=row.kind,
            created_at=row.created,
            updated_at=row.updated,
            labels=row.labels,
        )

    # -- what subclasses decide ---------------------------------------------

    def _make(self, kind: Kind, snap_id: int, parent_ids: Sequence[int]) -> None:
        raise NotImplementedError

    def _mounts(self, row: _Row, chain: Sequence[_Row]) -> list[Mount]:
        raise NotImplementedError

    def _usage_of(self, row: _Row) -> Usage:
        return disk_usage(self.fs_of(row.id))
