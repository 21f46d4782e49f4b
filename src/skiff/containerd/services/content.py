"""containerd.services.content.v1: blobs seen through a namespace, and
resumable ingests (Write streams: stat, write, commit).

A blob is stored once; a namespace that commits bytes another namespace
already has only gains a reference. Ingest refs are kept per namespace
(`<ns>/<ref>` in the raw store).
"""

from __future__ import annotations

import builtins
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from skiff.containerd.content import Status, Writer
from skiff.containerd.events import types as et
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import ContentRef, Resource
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core
from skiff.errors import AlreadyExists, InvalidArgument, NotFound, SkiffError
from skiff.oci.digest import Digest

READ_CHUNK = 1 << 20
STAT, WRITE, COMMIT = 0, 1, 2


class OutOfRange(SkiffError):
    grpc_code = 11
    http_status = 416


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    digest: str
    size: int
    created_at: int
    updated_at: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteRequest:
    action: int
    ref: str = ""
    total: int = 0
    expected: str = ""
    offset: int = 0
    data: bytes = b""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class WriteResponse:
    action: int
    started_at: int = 0
    updated_at: int = 0
    offset: int = 0
    total: int = 0
    digest: str = ""


def _digest(value: str) -> Digest:
    try:
        return Digest(value)
    except SkiffError:
        raise InvalidArgument(f"digest {value!r} is invalid")
    except ValueError:
        raise InvalidArgument(f"digest {value!r} is invalid")


class ContentService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def _info(self, ref: ContentRef) -> Info:
        size = self.core.content.info(ref.digest).size
        return Info(
            digest=ref.digest,
            size=size,
            created_at=ref.created_at,
            updated_at=ref.updated_at,
            labels=ref.labels,
        )

    def info(self, digest: str) -> Info:
        d = _digest(digest)
        return self._info(self.core.meta.get_content(required_namespace(), str(d)))

    def update(self, digest: str, labels: Mapping[str, str], paths: Sequence[str]) -> Info:
        d = _digest(digest)
        return self._info(
            self.core.meta.update_content(required_namespace(), str(d), labels, paths)
        )

    def list(self, filters: Sequence[str] = ()) -> builtins.list[Info]:
        flt = parse_filters(filters)
        out = []
        for ref in self.core.meta.list_content(required_namespace()):
            if not flt.match(labels_lookup({"digest": ref.digest}, dict(ref.labels))):
                continue
            with contextlib.suppress(NotFound):
                out.append(self._info(ref))
        return out

    def delete(self, digest: str) -> None:
        ns = required_namespace()
        d = str(_digest(digest))
        with self.core.meta.lock:
            if self.core.meta.remove_content(ns, d):
                with contextlib.suppress(NotFound):
                    self.core.content.delete(d)
        self.core.publish(ns, et.ContentDelete(digest=d))

    def read(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        d = _digest(digest)
        self.core.meta.get_content(required_namespace(), str(d))
        if offset < 0 or size < 0:
            raise InvalidArgument("offset and size must not be negative")
        f = self.core.content.open(d)
        total = self.core.content.info(d).size
        if offset > total:
            f.close()
            raise OutOfRange(f"read offset {offset} beyond the end of {d} ({total} bytes)")

        def chunks() -> Iterator[bytes]:
            with f:
                f.seek(offset)
                left = size if size else total - offset
                while left > 0:
                    chunk = f.read(min(READ_CHUNK, left))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk

        return chunks()

    # -- ingests -------------------------------------------------------------

    @staticmethod
    def _strip(ns: str, st: Status) -> Status:
        from dataclasses import replace

        return replace(st, ref=st.ref[len(ns) + 1 :])

    def status(self, ref: str) -> Status:
        ns = required_namespace()
        return self._strip(ns, self.core.content.status(f"{ns}/{ref}"))

    def list_statuses(self, filters: Sequence[str] = ()) -> builtins.list[Status]:
        ns = required_namespace()
        flt = parse_filters(filters)
        return [
            self._strip(ns, st)
            for st in self.core.content.statuses()
            if st.ref.startswith(ns + "/")
            and flt.match(labels_lookup({"ref": st.ref[len(ns) + 1 :]}, {}))
        ]

    def abort(self, ref: str) -> None:
        ns = required_namespace()
        self.core.content.abort(f"{ns}/{ref}")

    def write(self, requests: Iterator[WriteRequest]) -> Iterator[WriteResponse]:
        """One Write stream: the first request names the ref; the stream ends
        after a commit (or when the client stops sending)."""
        ns = required_namespace()
        session = _WriteSession(self.core, ns)
        try:
            for req in requests:
                resp = session.handle(req)
                yield resp
                if req.action == COMMIT:
                    return
        finally:
            session.close()


class _WriteSession:
    def __init__(self, core: Core, ns: str) -> None:
        self.core = core
        self.ns = ns
        self.writer: Writer | None = None
        self.ref = ""

    def _open(self, req: WriteRequest) -> Writer:
        if not req.ref:
            raise InvalidArgument("first message of a write must name a ref")
        self.ref = req.ref
        expected = _digest(req.expected) if req.expected else None
        if expected is not None:
            if self.core.meta.has_content(self.ns, str(expected)):
                raise AlreadyExists(f"content {expected}: already exists")
            if self.core.content.exists(expected):
                # stored once: another namespace has it, this one gains a reference
                self.core.meta.add_content(self.ns, str(expected), req.labels)
                self.core.lease_add(self.ns, Resource(str(expected), "content"))
                raise AlreadyExists(f"content {expected}: already exists")
        return self.core.content.writer(f"{self.ns}/{req.ref}", total=req.total, expected=expected)

    def handle(self, req: WriteRequest) -> WriteResponse:
        if self.writer is None:
            self.writer = self._open(req)
        elif req.ref and req.ref != self.ref:
            raise InvalidArgument(f"write stream for {self.ref} got a message for {req.ref}")
        w = self.writer
        if req.total:
            w.total = req.total
        if req.action == STAT:
            return self._status(req.action)
        if req.action not in (WRITE, COMMIT):
            raise InvalidArgument(f"unknown write action {req.action}")
        if req.offset > 0 and req.offset != w.offset:
            raise OutOfRange(f"write @{req.offset} must occur at current offset {w.offset}")
        if req.offset == 0 and w.offset > 0:
            w.truncate(0)
        if req.data:
            w.write(req.data)
        if req.action == COMMIT:
            expected = _digest(req.expected) if req.expected else None
            size = req.total or w.total
            with self.core.meta.lock:
                try:
                    digest = str(w.commit(size, expected))
                except AlreadyExists:
                    digest = str(expected or w.digest())
                self.core.meta.add_content(self.ns, digest, req.labels)
                self.core.lease_add(self.ns, Resource(digest, "content"))
            self.writer = None
            return WriteResponse(action=COMMIT, offset=w.offset, total=size, digest=digest)
        return self._status(req.action)

    def _status(self, action: int) -> WriteResponse:
        assert self.writer is not None
        w = self.writer
        st = self.core.content.status(f"{self.ns}/{self.ref}")
        return WriteResponse(
            action=action,
            started_at=int(st.started_at * 1e9),
            updated_at=int(st.updated_at * 1e9),
            offset=w.offset,
            total=w.total,
            digest=str(w.digest()),
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()  # keeps the bytes for a resume
            self.writer = None
