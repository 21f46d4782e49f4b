"""The supervisor's content, images, snapshots, diff and leases services as
the image service needs them, over the generated gRPC stubs (engine layer,
talking down to skiff-containerd or containerd through its API only).

`RemoteContent` has the duck-typed ContentStore methods that skiff.image's
pull, push and archive code call (exists, info, read_all, open, writer,
write_blob), so those libraries run unchanged against a store that lives in
another process. Every call carries the namespace, and the lease when one is
held, as gRPC metadata.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc

from skiff import errors
from skiff.api.gen.containerd.services.content.v1 import content_pb2 as cpb
from skiff.api.gen.containerd.services.content.v1 import content_pb2_grpc as cgrpc
from skiff.api.gen.containerd.services.diff.v1 import diff_pb2 as dpb
from skiff.api.gen.containerd.services.diff.v1 import diff_pb2_grpc as dgrpc
from skiff.api.gen.containerd.services.images.v1 import images_pb2 as ipb
from skiff.api.gen.containerd.services.images.v1 import images_pb2_grpc as igrpc
from skiff.api.gen.containerd.services.leases.v1 import leases_pb2 as lpb
from skiff.api.gen.containerd.services.leases.v1 import leases_pb2_grpc as lgrpc
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2 as spb
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2_grpc as sgrpc
from skiff.api.gen.containerd.types import descriptor_pb2, mount_pb2
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
_CHUNK = 1 << 20
_MAX_MESSAGE = 16 << 20

_BY_CODE: dict[grpc.StatusCode, type[errors.SkiffError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.NotImplemented_,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
}


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """gRPC failures become skiff.errors at this boundary."""
    try:
        yield
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
        detail = e.details() if hasattr(e, "details") else str(e)
        raise _BY_CODE.get(code, errors.Internal)(str(detail or code.name.lower())) from None


def open_channel(address: str) -> grpc.Channel:
    target = address if address.startswith("unix:") else f"unix:{address}"
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            ("grpc.enable_http_proxy", 0),
        ],
    )


def _ts(value: Any) -> datetime | None:
    if value is None or (value.seconds == 0 and value.nanos == 0):
        return None
    return datetime.fromtimestamp(value.seconds + value.nanos / 1e9, UTC)


def descriptor_to_pb(desc: Descriptor) -> Any:
    return descriptor_pb2.Descriptor(
        media_type=desc.media_type,
        digest=str(desc.digest),
        size=desc.size,
        annotations=dict(desc.annotations),
    )


def descriptor_from_pb(pb: Any) -> Descriptor:
    return Descriptor(
        media_type=pb.media_type,
        digest=Digest(pb.digest),
        size=pb.size,
        annotations=dict(pb.annotations),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentInfo:
    digest: Digest
    size: int
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageRecord:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    name: str
    parent: str
    kind: int
    labels: Mapping[str, str] = field(default_factory=dict)


class Session:
    """The stubs on one channel, in one namespace, optionally under a lease."""

    def __init__(self, channel: grpc.Channel, namespace: str, lease: str = "") -> None:
        self.channel = channel
        self.namespace = namespace
        self.lease = lease
        self.content = RemoteContent(self)
        self._images = igrpc.ImagesStub(channel)
        self._snapshots = sgrpc.SnapshotsStub(channel)
        self._diff = dgrpc.DiffStub(channel)
        self._leases = lgrpc.LeasesStub(channel)

    @property
    def metadata(self) -> list[tuple[str, str]]:
        md = [(NAMESPACE_HEADER, self.namespace)]
        if self.lease:
            md.append((LEASE_HEADER, self.lease))
        return md

    def with_lease(self, lease: str) -> Session:
        return Session(self.channel, self.namespace, lease)

    # -- images ------------------------------------------------------------

    @staticmethod
    def _record(pb: Any) -> ImageRecord:
        return ImageRecord(
            name=pb.name,
            target=descriptor_from_pb(pb.target),
            labels=dict(pb.labels),
            created_at=_ts(pb.created_at),
            updated_at=_ts(pb.updated_at),
        )

    def list_images(
        self, filters: list[str] | None = None, timeout: float | None = None
    ) -> list[ImageRecord]:
        with mapped():
            resp = self._images.List(
                ipb.ListImagesRequest(filters=filters or []),
                metadata=self.metadata,
                timeout=timeout,
            )
        return [self._record(i) for i in resp.images]

    def get_image(self, name: str) -> ImageRecord:
        with mapped():
            resp = self._images.Get(ipb.GetImageRequest(name=name), metadata=self.metadata)
        return self._record(resp.image)

    def put_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> ImageRecord:
        """Create the record, or point an existing one at `target`."""
        image = ipb.Image(name=name, target=descriptor_to_pb(target), labels=dict(labels or {}))
        try:
            with mapped():
                resp = self._images.Create(
                    ipb.CreateImageRequest(image=image), metadata=self.metadata
                )
        except errors.AlreadyExists:
            from google.protobuf import field_mask_pb2

            paths = ["target"] + [f"labels.{k}" for k in (labels or {})]
            with mapped():
                resp = self._images.Update(
                    ipb.UpdateImageRequest(
                        image=image, update_mask=field_mask_pb2.FieldMask(paths=paths)
                    ),
                    metadata=self.metadata,
                )
        return self._record(resp.image)

    def delete_image(self, name: str, sync: bool = False) -> None:
        with mapped():
            self._images.Delete(
                ipb.DeleteImageRequest(name=name, sync=sync), metadata=self.metadata
            )

    # -- snapshots ---------------------------------------------------------

    def stat_snapshot(self, snapshotter: str, key: str) -> SnapshotInfo:
        with mapped():
            resp = self._snapshots.Stat(
                spb.StatSnapshotRequest(snapshotter=snapshotter, key=key), metadata=self.metadata
            )
        i = resp.info
        return SnapshotInfo(name=i.name, parent=i.parent, kind=int(i.kind), labels=dict(i.labels))

    def has_snapshot(self, snapshotter: str, key: str) -> bool:
        try:
            self.stat_snapshot(snapshotter, key)
            return True
        except errors.NotFound:
            return False

    def prepare_snapshot(
        self, snapshotter: str, key: str, parent: str, labels: Mapping[str, str] | None = None
    ) -> list[Any]:
        with mapped():
            resp = self._snapshots.Prepare(
                spb.PrepareSnapshotRequest(
                    snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
                ),
                metadata=self.metadata,
            )
        return list(resp.mounts)

    def commit_snapshot(
        self, snapshotter: str, name: str, key: str, labels: Mapping[str, str] | None = None
    ) -> None:
        with mapped():
            self._snapshots.Commit(
                spb.CommitSnapshotRequest(
                    snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
                ),
                metadata=self.metadata,
            )

    def remove_snapshot(self, snapshotter: str, key: str) -> None:
        with mapped():
            self._snapshots.Remove(
                spb.RemoveSnapshotRequest(snapshotter=snapshotter, key=key), metadata=self.metadata
            )

    def snapshot_usage(self, snapshotter: str, key: str) -> int:
        with mapped():
            resp = self._snapshots.Usage(
                spb.UsageRequest(snapshotter=snapshotter, key=key), metadata=self.metadata
            )
        return int(resp.size)

    # -- diff --------------------------------------------------------------

    def apply(self, layer: Descriptor, mounts: list[Any]) -> Descriptor:
        """Apply a layer blob from the content store onto mounts; the answer's
        digest is the layer's DiffID as the supervisor computed it."""
        with mapped():
            resp = self._diff.Apply(
                dpb.ApplyRequest(
                    diff=descriptor_to_pb(layer),
                    mounts=[
                        mount_pb2.Mount(
                            type=m.type, source=m.source, target=m.target, options=list(m.options)
                        )
                        for m in mounts
                    ],
                ),
                metadata=self.metadata,
            )
        return descriptor_from_pb(resp.applied)

    # -- leases ------------------------------------------------------------

    def create_lease(self, lease_id: str, labels: Mapping[str, str]) -> None:
        with mapped():
            self._leases.Create(
                lpb.CreateRequest(id=lease_id, labels=dict(labels)), metadata=self.metadata
            )

    def delete_lease(self, lease_id: str) -> None:
        with mapped():
            self._leases.Delete(lpb.DeleteRequest(id=lease_id), metadata=self.metadata)


class RemoteContent:
    """The supervisor's content store with skiff.containerd.content's method names."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._stub = cgrpc.ContentStub(session.channel)

    def info(self, digest: Digest | str) -> ContentInfo:
        with mapped():
            resp = self._stub.Info(
                cpb.InfoRequest(digest=str(digest)), metadata=self._session.metadata
            )
        i = resp.info
        return ContentInfo(
            digest=Digest(i.digest),
            size=i.size,
            labels=dict(i.labels),
            created_at=_ts(i.created_at),
        )

    def exists(self, digest: Digest | str) -> bool:
        try:
            self.info(digest)
            return True
        except errors.NotFound:
            return False

    def update_labels(self, digest: Digest | str, labels: Mapping[str, str]) -> None:
        """Set (or, with an empty value, clear) the given labels only."""
        from google.protobuf import field_mask_pb2

        with mapped():
            self._stub.Update(
                cpb.UpdateRequest(
                    info=cpb.Info(
                        digest=str(digest), labels={k: v for k, v in labels.items() if v}
                    ),
                    update_mask=field_mask_pb2.FieldMask(paths=[f"labels.{k}" for k in labels]),
                ),
                metadata=self._session.metadata,
            )

    def delete(self, digest: Digest | str) -> None:
        with mapped():
            self._stub.Delete(
                cpb.DeleteContentRequest(digest=str(digest)), metadata=self._session.metadata
            )

    def list(self) -> list[ContentInfo]:
        out: list[ContentInfo] = []
        with mapped():
            for resp in self._stub.List(cpb.ListContentRequest(), metadata=self._session.metadata):
                out.extend(
                    ContentInfo(digest=Digest(i.digest), size=i.size, labels=dict(i.labels))
                    for i in resp.info
                )
        return out

    def open(self, digest: Digest | str) -> RemoteBlob:
        return RemoteBlob(self._stub, str(digest), self._session.metadata)

    def read_all(self, digest: Digest | str, limit: int | None = None) -> bytes:
        if limit is not None and self.info(digest).size > limit:
            raise errors.InvalidArgument(f"blob {digest} larger than {limit} bytes")
        with self.open(digest) as f:
            return f.read()

    def writer(
        self, ref: str, total: int = 0, expected: Digest | str | None = None
    ) -> RemoteWriter:
        return RemoteWriter(self._stub, ref, total, str(expected or ""), self._session.metadata)

    def write_blob(
        self,
        data: bytes,
        expected: Digest | str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Digest:
        digest = Digest(str(expected)) if expected else Digest.from_bytes(data)
        delay = 0.02
        deadline = time.monotonic() + 120
        while True:
            if self.exists(digest):
                if labels:
                    self.update_labels(digest, labels)
                return digest
            try:
                with self.writer(f"write-{digest}", len(data), digest) as w:
                    for i in range(0, len(data), _CHUNK):
                        w.write(data[i : i + _CHUNK])
                    w.commit(len(data), digest, labels)
                return digest
            except errors.AlreadyExists:
                return digest
            except errors.Unavailable:
                # another writer holds the ref (a concurrent pull of the same
                # image): wait for it to commit or give up
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)


class RemoteBlob:
    """A blob read from the Read stream, as a file object."""

    def __init__(self, stub: Any, digest: str, metadata: list[tuple[str, str]]) -> None:
        self._stream = stub.Read(cpb.ReadContentRequest(digest=digest), metadata=metadata)
        self._buf = b""
        self._eof = False
        self.mode = "rb"  # http.client sends file bodies that say they are binary

    def _more(self) -> bool:
        if self._eof:
            return False
        with mapped():
            try:
                resp = next(self._stream)
            except StopIteration:
                self._eof = True
                return False
        self._buf += resp.data
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            while self._more():
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < n and self._more():
            pass
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def close(self) -> None:
        if not self._eof:
            self._stream.cancel()
            self._eof = True

    def __enter__(self) -> RemoteBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


class RemoteWriter:
    """An ingest over the Write stream: a strict request/response ping-pong."""

    data_path = ""  # no local file to follow: pull's unpacker is not used remotely

    def __init__(
        self, stub: Any, ref: str, total: int, expected: str, metadata: list[tuple[str, str]]
    ) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        with mapped():
            self._responses = stub.Write(iter(self._requests.get, _END), metadata=metadata)
        self.ref = ref
        self.total = total
        self.expected = expected
        resp = self._call(
            cpb.WriteContentRequest(action=cpb.STAT, ref=ref, total=total, expected=expected)
        )
        self.offset = int(resp.offset)

    def _call(self, request: Any) -> Any:
        self._requests.put(request)
        with mapped():
            try:
                return next(self._responses)
            except StopIteration:
                raise errors.Internal("content write stream ended without a response") from None

    def truncate(self, size: int) -> None:
        if size != 0:
            raise errors.InvalidArgument("remote ingests truncate only to 0")
        self.offset = 0  # a write at offset 0 makes the supervisor truncate

    def write(self, data: bytes | memoryview) -> int:
        chunk = bytes(data)
        for i in range(0, len(chunk), _CHUNK):
            part = chunk[i : i + _CHUNK]
            resp = self._call(
                cpb.WriteContentRequest(
                    action=cpb.WRITE, ref=self.ref, offset=self.offset, data=part
                )
            )
            self.offset = int(resp.offset)
        return len(chunk)

    def commit(
        self, size: int, expected: Digest | str, labels: Mapping[str, str] | None = None
    ) -> str:
        resp = self._call(
            cpb.WriteContentRequest(
                action=cpb.COMMIT,
                ref=self.ref,
                offset=self.offset,
                total=size,
                expected=str(expected),
                labels=dict(labels or {}),
            )
        )
        return str(resp.digest or expected)

    def close(self) -> None:
        self._requests.put(_END)
        with contextlib.suppress(grpc.RpcError, StopIteration):
            for _ in self._responses:
                pass

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
