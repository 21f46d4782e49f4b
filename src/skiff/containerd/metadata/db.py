"""The metadata database of skiff-containerd: what each namespace holds.

Sits between the gRPC services above and the raw stores below (the content
store keeps blobs once by digest; the snapshotters keep directories). Here a
namespace sees only its own images, containers, leases and the content it
references. One SQLite file in WAL mode; readers run concurrently, writes go
through one lock so there is a single writer at a time::

    namespaces(name, labels, created)
    images(ns, name, media_type, digest, size, annotations, labels, created, updated)
    containers(ns, id, labels, image, runtime, runtime_options, spec, snapshotter,
               snapshot_key, extensions, created, updated)
    content(ns, digest, labels, created, updated)       per-namespace references
    leases(ns, id, labels, created)
    lease_resources(ns, lease, type, id)
"""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name TEXT PRIMARY KEY, labels TEXT NOT NULL, created INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    ns TEXT NOT NULL, name TEXT NOT NULL, media_type TEXT NOT NULL, digest TEXT NOT NULL,
    size INTEGER NOT NULL, annotations TEXT NOT NULL, labels TEXT NOT NULL,
    created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (ns, name));
CREATE TABLE IF NOT EXISTS containers (
    ns TEXT NOT NULL, id TEXT NOT NULL, labels TEXT NOT NULL, image TEXT NOT NULL,
    runtime TEXT NOT NULL, runtime_options TEXT, spec TEXT, snapshotter TEXT NOT NULL,
    snapshot_key TEXT NOT NULL, extensions TEXT NOT NULL, created INTEGER NOT NULL,
    updated INTEGER NOT NULL, PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS content (
    ns TEXT NOT NULL, digest TEXT NOT NULL, labels TEXT NOT NULL,
    created INTEGER NOT NULL, updated INTEGER NOT NULL, PRIMARY KEY (ns, digest));
CREATE INDEX IF NOT EXISTS content_by_digest ON content (digest);
CREATE TABLE IF NOT EXISTS leases (
    ns TEXT NOT NULL, id TEXT NOT NULL, labels TEXT NOT NULL, created INTEGER NOT NULL,
    PRIMARY KEY (ns, id));
CREATE TABLE IF NOT EXISTS lease_resources (
    ns TEXT NOT NULL, lease TEXT NOT NULL, type TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (ns, lease, type, id));
"""

# containerd's identifier rule (namespaces, container ids, lease ids)
_IDENT = re.compile(r"^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$")
_IDENT_MAX = 76


def validate_identifier(kind: str, value: str) -> None:
    if not value:
        raise InvalidArgument(f"{kind}: identifier must not be empty")
    if len(value) > _IDENT_MAX:
        raise InvalidArgument(f"{kind} {value!r}: identifier longer than {_IDENT_MAX} characters")
    if not _IDENT.match(value):
        raise InvalidArgument(
            f"{kind} {value!r}: identifier must match {_IDENT.pattern}: invalid argument"
        )


@dataclass(frozen=True, slots=True)
class AnyValue:
    """A google.protobuf.Any kept opaque: the supervisor stores what it is given."""

    type_url: str
    value: bytes

    def to_json(self) -> list[str]:
        return [self.type_url, base64.b64encode(self.value).decode()]

    @classmethod
    def from_json(cls, obj: Sequence[str] | None) -> AnyValue | None:
        if not obj:
            return None
        return cls(obj[0], base64.b64decode(obj[1]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    name: str
    target: Target
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0  # ns since the epoch
    updated_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    runtime: str = ""
    runtime_options: AnyValue | None = None
    spec: AnyValue | None = None
    snapshotter: str = ""
    snapshot_key: str = ""
    extensions: Mapping[str, AnyValue] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentRef:
    digest: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0
    updated_at: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    id: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: int = 0


@dataclass(frozen=True, slots=True)
class Resource:
    id: str
    type: str  # "content", "ingests", "snapshots/<snapshotter>"


def apply_label_paths(
    old: Mapping[str, str], new: Mapping[str, str], paths: Sequence[str], prefix: str = "labels"
) -> dict[str, str]:
    """containerd's field-path rule for a map: `labels` replaces the map,
    `labels.KEY` sets or (when absent from `new`) removes one key."""
    out = dict(old)
    for path in paths:
        if path == prefix:
            out = dict(new)
        elif path.startswith(prefix + "."):
            key = path[len(prefix) + 1 :]
            if key in new:
                out[key] = new[key]
            else:
                out.pop(key, None)
    return out


def _j(obj: object) -> str:
    return json.dumps(obj, sort_keys=True)


class Metadata:
    """The namespaced records of one skiff-containerd root."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        # one writer; sqlite's own locking would also serialise, but with
        # busy errors instead of waiting
        self.lock = threading.RLock()

    def close(self) -> None:
        with self.lock:
            self._db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; nested calls join the outer one."""
        with self.lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self.lock:
            return list(self._db.execute(sql, args).fetchall())

    # -- namespaces ---------------------------------------------------------

    def ensure_namespace(self, name: str) -> None:
        """Namespaces come into being when something is stored in them, as in containerd."""
        validate_identifier("namespace", name)
        with self.write() as db:
            db.execute(
                "INSERT OR IGNORE INTO namespaces VALUES (?, '{}', ?)", (name, time.time_ns())
            )

    def create_namespace(self, name: str, labels: Mapping[str, str]) -> Namespace:
        validate_identifier("namespace", name)
        with self.write() as db:
            try:
                db.execute(
                    "INSERT INTO namespaces VALUES (?, ?, ?)", (name, _j(labels), time.time_ns())
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"namespace {name}: already exists")
        return Namespace(name=name, labels=dict(labels))

    def get_namespace(self, name: str) -> Namespace:
        rows = self._rows("SELECT labels FROM namespaces WHERE name = ?", (name,))
        if not rows:
            raise NotFound(f"namespace {name}: not found")
        return Namespace(name=name, labels=json.loads(str(rows[0][0])))

    def list_namespaces(self) -> list[Namespace]:
        return [
            Namespace(name=str(n), labels=json.loads(str(lab)))
            for n, lab in self._rows("SELECT name, labels FROM namespaces ORDER BY name")
        ]

    def update_namespace(
        self, name: str, labels: Mapping[str, str], paths: Sequence[str]
    ) -> Namespace:
        with self.write() as db:
            old = self.get_namespace(name)
            new = apply_label_paths(old.labels, labels, paths or ["labels"])
            db.execute("UPDATE namespaces SET labels = ? WHERE name = ?", (_j(new), name))
        return Namespace(name=name, labels=new)

    def delete_namespace(self, name: str) -> None:
        with self.write() as db:
            self.get_namespace(name)
            for table, what in (
                ("images", "images"),
                ("containers", "containers"),
                ("content", "content"),
                ("leases", "leases"),
            ):
                if db.execute(f"SELECT 1 FROM {table} WHERE ns = ? LIMIT 1", (name,)).fetchone():
                    raise FailedPrecondition(
                        f"namespace {name} must be empty, but it still has {what}"
                    )
            db.execute("DELETE FROM namespaces WHERE name = ?", (name,))

    # -- images -------------------------------------------------------------

    @staticmethod
    def _image(row: tuple[object, ...]) -> Image:
        name, mt, dg, size, ann, labels, created, updated = row
        return Image(
            name=str(name),
            target=Target(
                media_type=str(mt),
                digest=str(dg),
                size=int(str(size)),
                annotations=json.loads(str(ann)),
            ),
            labels=json.loads(str(labels)),
            created_at=int(str(created)),
            updated_at=int(str(updated)),
        )

    _IMG = (
        "SELECT name, media_type, digest, size, annotations, labels, created, updated FROM images"
    )

    def get_image(self, ns: str, name: str) -> Image:
        rows = self._rows(self._IMG + " WHERE ns = ? AND name = ?", (ns, name))
        if not rows:
            raise NotFound(f"image {name!r}: not found")
        return self._image(rows[0])

    def list_images(self, ns: str) -> list[Image]:
        return [
            self._image(r) for r in self._rows(self._IMG + " WHERE ns = ? ORDER BY name", (ns,))
        ]

    @staticmethod
    def _check_image(image: Image) -> None:
        if not image.name:
            raise InvalidArgument("image name must not be empty")
        if not image.target.media_type:
            raise InvalidArgument(f"image {image.name}: target media type must not be empty")
        if not image.target.digest or ":" not in image.target.digest:
            raise InvalidArgument(
                f"image {image.name}: target digest {image.target.digest!r} is invalid"
            )

    def create_image(self, ns: str, image: Image) -> Image:
        self._check_image(image)
        now = time.time_ns()
        image = replace(image, created_at=now, updated_at=now)
        with self.write() as db:
            self.ensure_namespace(ns)
            try:
                db.execute(
                    "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        ns,
                        image.name,
                        image.target.media_type,
                        image.target.digest,
                        image.target.size,
                        _j(image.target.annotations),
                        _j(image.labels),
                        now,
                        now,
                    ),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {image.name!r}: already exists")
        return image

    def update_image(self, ns: str, image: Image, paths: Sequence[str]) -> Image:
        with self.write() as db:
            old = self.get_image(ns, image.name)
            target, labels = old.target, dict(old.labels)
            if not paths:
                target, labels = image.target, dict(image.labels)
            for path in paths:
                if path == "target":
                    target = image.target
                elif path == "annotations" or path.startswith("annotations."):
                    target = replace(
                        target,
                        annotations=apply_label_paths(
                            target.annotations, image.target.annotations, [path], "annotations"
                        ),
                    )
                elif path == "labels" or path.startswith("labels."):
                    labels = apply_label_paths(labels, image.labels, [path])
                else:
                    raise InvalidArgument(f"cannot update {path!r} field on image {image.name!r}")
            new = replace(old, target=target, labels=labels, updated_at=time.time_ns())
            self._check_image(new)
            db.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?,"
                " labels = ?, updated = ? WHERE ns = ? AND name = ?",
                (
                    target.media_type,
                    target.digest,
                    target.size,
                    _j(target.annotations),
                    _j(labels),
                    new.updated_at,
                    ns,
                    image.name,
                ),
            )
        return new

    def delete_image(self, ns: str, name: str) -> None:
        with self.write() as db:
            if db.execute("DELETE FROM images WHERE ns = ? AND name = ?", (ns, name)).rowcount == 0:
                raise NotFound(f"image {name!r}: not found")

    # -- containers ----------------------------------------------------------

    _CTR = (
        "SELECT id, labels, image, runtime, runtime_options, spec, snapshotter, snapshot_key,"
        " extensions, created, updated FROM containers"
    )

    @staticmethod
    def _container(row: tuple[object, ...]) -> Container:
        cid, labels, image, runtime, ropts, spec, snapshotter, key, ext, created, updated = row
        return Container(
            id=str(cid),
            labels=json.loads(str(labels)),
            image=str(image),
            runtime=str(runtime),
            runtime_options=AnyValue.from_json(json.loads(str(ropts))) if ropts else None,
            spec=AnyValue.from_json(json.loads(str(spec))) if spec else None,
            snapshotter=str(snapshotter),
            snapshot_key=str(key),
            extensions={
                k: a
                for k, v in json.loads(str(ext)).items()
                if (a := AnyValue.from_json(v)) is not None
            },
            created_at=int(str(created)),
            updated_at=int(str(updated)),
        )

    def get_container(self, ns: str, cid: str) -> Container:
        rows = self._rows(self._CTR + " WHERE ns = ? AND id = ?", (ns, cid))
        if not rows:
            raise NotFound(f"container {cid!r} in namespace {ns!r}: not found")
        return self._container(rows[0])

    def list_containers(self, ns: str) -> list[Container]:
        return [
            self._container(r) for r in self._rows(self._CTR + " WHERE ns = ? ORDER BY id", (ns,))
        ]

    def _store_container(self, db: sqlite3.Connection, ns: str, c: Container, insert: bool) -> None:
        values = (
            _j(c.labels),
            c.image,
            c.runtime,
            _j(c.runtime_options.to_json()) if c.runtime_options else None,
            _j(c.spec.to_json()) if c.spec else None,
            c.snapshotter,
            c.snapshot_key,
            _j({k: v.to_json() for k, v in c.extensions.items()}),
            c.updated_at,
        )
        if insert:
            db.execute(
                "INSERT INTO containers (labels, image, runtime, runtime_options, spec,"
                " snapshotter, snapshot_key, extensions, updated, ns, id, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*values, ns, c.id, c.created_at),
            )
        else:
            db.execute(
                "UPDATE containers SET labels = ?, image = ?, runtime = ?, runtime_options = ?,"
                " spec = ?, snapshotter = ?, snapshot_key = ?, extensions = ?, updated = ?"
                " WHERE ns = ? AND id = ?",
                (*values, ns, c.id),
            )

    def create_container(self, ns: str, c: Container) -> Container:
        validate_identifier("container", c.id)
        if not c.runtime:
            raise InvalidArgument(f"container {c.id}: runtime name must not be empty")
        if c.spec is None:
            raise InvalidArgument(f"container {c.id}: spec must not be empty")
        if c.snapshot_key and not c.snapshotter:
            raise InvalidArgument(f"container {c.id}: snapshot key given without a snapshotter")
        now = time.time_ns()
        c = replace(c, created_at=now, updated_at=now)
        with self.write() as db:
            self.ensure_namespace(ns)
            try:
                self._store_container(db, ns, c, insert=True)
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"container {c.id!r}: already exists")
        return c

    def update_container(self, ns: str, c: Container, paths: Sequence[str]) -> Container:
        with self.write() as db:
            old = self.get_container(ns, c.id)
            new = old
            if not paths:
                if c.runtime and c.runtime != old.runtime:
                    raise InvalidArgument(f"container {c.id}: runtime field is immutable")
                if c.snapshotter and c.snapshotter != old.snapshotter:
                    raise InvalidArgument(f"container {c.id}: snapshotter field is immutable")
                paths = ["labels", "image", "spec", "extensions", "snapshotkey"]
            for path in paths:
                if path == "labels" or path.startswith("labels."):
                    new = replace(new, labels=apply_label_paths(new.labels, c.labels, [path]))
                elif path == "image":
                    new = replace(new, image=c.image)
                elif path == "spec":
                    new = replace(new, spec=c.spec)
                elif path == "snapshotkey":
                    new = replace(new, snapshot_key=c.snapshot_key)
                elif path == "extensions":
                    new = replace(new, extensions=dict(c.extensions))
                elif path.startswith("extensions."):
                    key = path[len("extensions.") :]
                    ext = dict(new.extensions)
                    if key in c.extensions:
                        ext[key] = c.extensions[key]
                    else:
                        ext.pop(key, None)
                    new = replace(new, extensions=ext)
                else:
                    raise InvalidArgument(f"cannot update {path!r} field on container {c.id!r}")
            if new.spec is None:
                raise InvalidArgument(f"container {c.id}: spec must not be empty")
            new = replace(new, updated_at=time.time_ns())
            self._store_container(db, ns, new, insert=False)
        return new

    def delete_container(self, ns: str, cid: str) -> None:
        with self.write() as db:
            if (
                db.execute("DELETE FROM containers WHERE ns = ? AND id = ?", (ns, cid)).rowcount
                == 0
            ):
                raise NotFound(f"container {cid!r} in namespace {ns!r}: not found")

    # -- content references ---------------------------------------------------

    def get_content(self, ns: str, digest: str) -> ContentRef:
        rows = self._rows(
            "SELECT labels, created, updated FROM content WHERE ns = ? AND digest = ?", (ns, digest)
        )
        if not rows:
            raise NotFound(f"content digest {digest}: not found")
        labels, created, updated = rows[0]
        return ContentRef(
            digest=digest,
            labels=json.loads(str(labels)),
            created_at=int(str(created)),
            updated_at=int(str(updated)),
        )

    def has_content(self, ns: str, digest: str) -> bool:
        return bool(self._rows("SELECT 1 FROM content WHERE ns = ? AND digest = ?", (ns, digest)))

    def list_content(self, ns: str) -> list[ContentRef]:
        return [
            ContentRef(
                digest=str(d),
                labels=json.loads(str(lab)),
                created_at=int(str(c)),
                updated_at=int(str(u)),
            )
            for d, lab, c, u in self._rows(
                "SELECT digest, labels, created, updated FROM content WHERE ns = ? ORDER BY digest",
                (ns,),
            )
        ]

    def add_content(self, ns: str, digest: str, labels: Mapping[str, str]) -> ContentRef:
        """Reference a committed blob from `ns` (labels merge into an existing reference)."""
        now = time.time_ns()
        with self.write() as db:
            self.ensure_namespace(ns)
            row = db.execute(
                "SELECT labels FROM content WHERE ns = ? AND digest = ?", (ns, digest)
            ).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO content VALUES (?, ?, ?, ?, ?)", (ns, digest, _j(labels), now, now)
                )
            elif labels:
                merged = json.loads(row[0])
                merged.update(labels)
                db.execute(
                    "UPDATE content SET labels = ?, updated = ? WHERE ns = ? AND digest = ?",
                    (_j(merged), now, ns, digest),
                )
        return self.get_content(ns, digest)

    def update_content(
        self, ns: str, digest: str, labels: Mapping[str, str], paths: Sequence[str]
    ) -> ContentRef:
        with self.write() as db:
            old = self.get_content(ns, digest)
            for path in paths:
                if not (path == "labels" or path.startswith("labels.")):
                    raise InvalidArgument(f"cannot update {path!r} field on content")
            new = apply_label_paths(old.labels, labels, paths or ["labels"])
            db.execute(
                "UPDATE content SET labels = ?, updated = ? WHERE ns = ? AND digest = ?",
                (_j(new), time.time_ns(), ns, digest),
            )
        return self.get_content(ns, digest)

    def remove_content(self, ns: str, digest: str) -> bool:
        """Drop the reference; True when no namespace references the blob any more."""
        with self.write() as db:
            if (
                db.execute("DELETE FROM content WHERE ns = ? AND digest = ?", (ns, digest)).rowcount
                == 0
            ):
                raise NotFound(f"content digest {digest}: not found")
            return (
                db.execute("SELECT 1 FROM content WHERE digest = ?", (digest,)).fetchone() is None
            )

    def content_digests(self) -> set[str]:
        return {str(r[0]) for r in self._rows("SELECT DISTINCT digest FROM content")}

    # -- leases -------------------------------------------------------------

    def create_lease(self, ns: str, lease_id: str, labels: Mapping[str, str]) -> Lease:
        if not lease_id:
            # containerd takes any non-empty lease id (clients add random suffixes)
            raise InvalidArgument("lease id must not be empty")
        now = time.time_ns()
        with self.write() as db:
            self.ensure_namespace(ns)
            try:
                db.execute(
                    "INSERT INTO leases VALUES (?, ?, ?, ?)", (ns, lease_id, _j(labels), now)
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id!r}: already exists")
        return Lease(id=lease_id, labels=dict(labels), created_at=now)

    def list_leases(self, ns: str) -> list[Lease]:
        return [
            Lease(id=str(i), labels=json.loads(str(lab)), created_at=int(str(c)))
            for i, lab, c in self._rows(
                "SELECT id, labels, created FROM leases WHERE ns = ? ORDER BY created", (ns,)
            )
        ]

    def _check_lease(self, db: sqlite3.Connection, ns: str, lease_id: str) -> None:
        if not db.execute(
            "SELECT 1 FROM leases WHERE ns = ? AND id = ?", (ns, lease_id)
        ).fetchone():
            raise NotFound(f"lease {lease_id!r}: not found")

    def delete_lease(self, ns: str, lease_id: str) -> None:
        with self.write() as db:
            self._check_lease(db, ns, lease_id)
            db.execute("DELETE FROM leases WHERE ns = ? AND id = ?", (ns, lease_id))
            db.execute("DELETE FROM lease_resources WHERE ns = ? AND lease = ?", (ns, lease_id))

    def add_lease_resource(self, ns: str, lease_id: str, res: Resource) -> None:
        if not (res.type in ("content", "ingests") or res.type.startswith("snapshots/")):
            raise InvalidArgument(f"unsupported lease resource type {res.type!r}")
        with self.write() as db:
            self._check_lease(db, ns, lease_id)
            db.execute(
                "INSERT OR IGNORE INTO lease_resources VALUES (?, ?, ?, ?)",
                (ns, lease_id, res.type, res.id),
            )

    def delete_lease_resource(self, ns: str, lease_id: str, res: Resource) -> None:
        with self.write() as db:
            self._check_lease(db, ns, lease_id)
            db.execute(
                "DELETE FROM lease_resources WHERE ns = ? AND lease = ? AND type = ? AND id = ?",
                (ns, lease_id, res.type, res.id),
            )

    def list_lease_resources(self, ns: str, lease_id: str) -> list[Resource]:
        with self.lock:
            self._check_lease(self._db, ns, lease_id)
            rows = self._rows(
                "SELECT id, type FROM lease_resources WHERE ns = ? AND lease = ? ORDER BY type, id",
                (ns, lease_id),
            )
        return [Resource(str(i), str(t)) for i, t in rows]

    def all_lease_resources(self, ns: str) -> list[tuple[str, Resource]]:
        return [
            (str(lease), Resource(str(i), str(t)))
            for lease, i, t in self._rows(
                "SELECT lease, id, type FROM lease_resources WHERE ns = ?", (ns,)
            )
        ]
