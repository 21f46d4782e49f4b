"""The typed client of containerd's gRPC API, what skiffd and skiff-ctr use
to talk to skiff-containerd (or Debian's containerd): one method per call,
dataclasses in and out, gRPC failures raised as skiff.errors.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import any_pb2, empty_pb2, field_mask_pb2, timestamp_pb2

from skiff.api.gen.containerd.services.containers.v1 import containers_pb2, containers_pb2_grpc
from skiff.api.gen.containerd.services.content.v1 import content_pb2, content_pb2_grpc
from skiff.api.gen.containerd.services.diff.v1 import diff_pb2, diff_pb2_grpc
from skiff.api.gen.containerd.services.events.v1 import events_pb2, events_pb2_grpc
from skiff.api.gen.containerd.services.images.v1 import images_pb2, images_pb2_grpc
from skiff.api.gen.containerd.services.introspection.v1 import (
    introspection_pb2,
    introspection_pb2_grpc,
)
from skiff.api.gen.containerd.services.leases.v1 import leases_pb2, leases_pb2_grpc
from skiff.api.gen.containerd.services.namespaces.v1 import namespace_pb2, namespace_pb2_grpc
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from skiff.api.gen.containerd.services.tasks.v1 import tasks_pb2, tasks_pb2_grpc
from skiff.api.gen.containerd.services.version.v1 import version_pb2_grpc
from skiff.api.gen.containerd.types import descriptor_pb2, mount_pb2
from skiff.containerd.client import _grpc
from skiff.containerd.client._defaults import (  # defined there; callers take them here too
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_RUNTIME,
    SPEC_TYPE_URL,
)
from skiff.containerd.client._defaults import DEFAULT_SNAPSHOTTER as DEFAULT_SNAPSHOTTER
from skiff.containerd.client._grpc import LEASE_HEADER, NAMESPACE_HEADER, BidiStream, mapped
from skiff.containerd.client.events import decode_envelope
from skiff.containerd.client.types import (
    Container,
    ContentInfo,
    Envelope,
    ExitStatus,
    Image,
    IngestStatus,
    Lease,
    LeaseResource,
    Metric,
    Mount,
    Namespace,
    Plugin,
    Process,
    ProcessInfo,
    Runtime,
    SnapshotInfo,
    SnapshotKind,
    TaskStatus,
    Usage,
    Version,
)
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor

PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"


# -- conversions --------------------------------------------------------------


def _time(ts: Any) -> datetime | None:
    if ts is None or (ts.seconds == 0 and ts.nanos == 0):
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    t = timestamp_pb2.Timestamp()
    t.FromDatetime(value.astimezone(UTC))
    return t


def _any(type_url: str, value: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=value)


def _mounts_out(mounts: Any) -> list[Mount]:
    return [
        Mount(type=str(m.type), source=str(m.source), target=str(m.target), options=list(m.options))
        for m in mounts
    ]


def _mounts_in(mounts: Sequence[Mount]) -> list[mount_pb2.Mount]:
    return [
        mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def descriptor_out(d: Any) -> Descriptor:
    return Descriptor(
        media_type=str(d.media_type),
        digest=Digest(d.digest),
        size=int(d.size),
        annotations=dict(d.annotations),
    )


def descriptor_in(d: Descriptor) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(
        media_type=d.media_type, digest=str(d.digest), size=d.size, annotations=dict(d.annotations)
    )


def _container_out(c: Any) -> Container:
    spec = None
    if c.HasField("spec") and c.spec.value:
        try:
            spec = json.loads(c.spec.value)
        except ValueError:
            spec = None
    runtime = Runtime(name=str(c.runtime.name))
    if c.runtime.HasField("options"):
        runtime = Runtime(
            name=str(c.runtime.name),
            options_type=str(c.runtime.options.type_url),
            options=bytes(c.runtime.options.value),
        )
    return Container(
        id=str(c.id),
        image=str(c.image),
        labels=dict(c.labels),
        runtime=runtime,
        spec=spec,
        snapshotter=str(c.snapshotter),
        snapshot_key=str(c.snapshot_key),
        created_at=_time(c.created_at),
        updated_at=_time(c.updated_at),
        extensions={k: bytes(v.value) for k, v in c.extensions.items()},
    )


def _image_out(i: Any) -> Image:
    return Image(
        name=str(i.name),
        target=descriptor_out(i.target),
        labels=dict(i.labels),
        created_at=_time(i.created_at),
        updated_at=_time(i.updated_at),
    )


def _content_out(i: Any) -> ContentInfo:
    return ContentInfo(
        digest=str(i.digest),
        size=int(i.size),
        created_at=_time(i.created_at),
        updated_at=_time(i.updated_at),
        labels=dict(i.labels),
    )


def _status_out(s: Any) -> IngestStatus:
    return IngestStatus(
        ref=str(s.ref),
        offset=int(s.offset),
        total=int(s.total),
        expected=str(s.expected),
        started_at=_time(s.started_at),
        updated_at=_time(s.updated_at),
    )


def _snapshot_out(i: Any) -> SnapshotInfo:
    return SnapshotInfo(
        name=str(i.name),
        parent=str(i.parent),
        kind=SnapshotKind(int(i.kind)),
        labels=dict(i.labels),
        created_at=_time(i.created_at),
        updated_at=_time(i.updated_at),
    )


def _process_out(p: Any) -> Process:
    return Process(
        container_id=str(p.container_id),
        id=str(p.id),
        pid=int(p.pid),
        status=TaskStatus(int(p.status)),
        stdin=str(p.stdin),
        stdout=str(p.stdout),
        stderr=str(p.stderr),
        terminal=bool(p.terminal),
        exit_status=int(p.exit_status),
        exited_at=_time(p.exited_at),
    )


def _lease_out(lease: Any) -> Lease:
    return Lease(id=str(lease.id), created_at=_time(lease.created_at), labels=dict(lease.labels))


def _label_mask(labels: Mapping[str, str], *, prefix: str = "labels") -> list[str]:
    return [f"{prefix}.{k}" for k in labels] or [prefix]


# -- the client -----------------------------------------------------------------


class Client:
    """A connection to a containerd-API supervisor, bound to one namespace.

    `with_namespace` and `with_lease` give views sharing the channel; `close`
    closes the channel for every view.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        namespace: str = DEFAULT_NAMESPACE,
        *,
        channel: Any = None,
        lease: str = "",
        timeout: float | None = None,
    ) -> None:
        self.address = address
        self.namespace = namespace
        self.lease = lease
        self.timeout = timeout
        self._channel = channel if channel is not None else _grpc.open_channel(address)
        ch = self._channel
        self._version = version_pb2_grpc.VersionStub(ch)
        self._namespaces = namespace_pb2_grpc.NamespacesStub(ch)
        self._containers = containers_pb2_grpc.ContainersStub(ch)
        self._content = content_pb2_grpc.ContentStub(ch)
        self._images = images_pb2_grpc.ImagesStub(ch)
        self._snapshots = snapshots_pb2_grpc.SnapshotsStub(ch)
        self._tasks = tasks_pb2_grpc.TasksStub(ch)
        self._events = events_pb2_grpc.EventsStub(ch)
        self._leases = leases_pb2_grpc.LeasesStub(ch)
        self._diff = diff_pb2_grpc.DiffStub(ch)
        self._introspection = introspection_pb2_grpc.IntrospectionStub(ch)

    def with_namespace(self, namespace: str) -> Client:
        return Client(
            self.address, namespace, channel=self._channel, lease=self.lease, timeout=self.timeout
        )

    def with_lease(self, lease: str) -> Client:
        return Client(
            self.address, self.namespace, channel=self._channel, lease=lease, timeout=self.timeout
        )

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def metadata(self) -> list[tuple[str, str]]:
        md = [(NAMESPACE_HEADER, self.namespace)]
        if self.lease:
            md.append((LEASE_HEADER, self.lease))
        return md

    def _call(self, method: Any, request: Any, *, timeout: float | None = None) -> Any:
        with mapped():
            return method(request, metadata=self.metadata, timeout=timeout or self.timeout)

    def _stream(self, method: Any, request: Any) -> Iterator[Any]:
        with mapped():
            yield from method(request, metadata=self.metadata, timeout=self.timeout)

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the socket answers (the supervisor may still be starting)."""
        import grpc

        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            from skiff.errors import Unavailable

            raise Unavailable(f"{self.address}: no supervisor answers") from None

    # -- version, introspection --------------------------------------------------

    def version(self) -> Version:
        r = self._call(self._version.Version, empty_pb2.Empty())
        return Version(version=str(r.version), revision=str(r.revision))

    def server_uuid(self) -> str:
        return str(self._call(self._introspection.Server, empty_pb2.Empty()).uuid)

    def plugins(self, filters: Sequence[str] = ()) -> list[Plugin]:
        r = self._call(
            self._introspection.Plugins, introspection_pb2.PluginsRequest(filters=list(filters))
        )
        out = []
        for p in r.plugins:
            platforms = [
                "/".join(x for x in (pl.os, pl.architecture, pl.variant) if x) for pl in p.platforms
            ]
            out.append(
                Plugin(
                    type=str(p.type),
                    id=str(p.id),
                    requires=list(p.requires),
                    platforms=platforms,
                    exports=dict(p.exports),
                    capabilities=list(p.capabilities),
                    init_error=str(p.init_err.message) if p.HasField("init_err") else "",
                )
            )
        return out

    # -- namespaces --------------------------------------------------------------

    def list_namespaces(self) -> list[Namespace]:
        r = self._call(self._namespaces.List, namespace_pb2.ListNamespacesRequest())
        return [Namespace(str(n.name), dict(n.labels)) for n in r.namespaces]

    def get_namespace(self, name: str) -> Namespace:
        r = self._call(self._namespaces.Get, namespace_pb2.GetNamespaceRequest(name=name))
        return Namespace(str(r.namespace.name), dict(r.namespace.labels))

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> Namespace:
        ns = namespace_pb2.Namespace(name=name, labels=dict(labels or {}))
        r = self._call(self._namespaces.Create, namespace_pb2.CreateNamespaceRequest(namespace=ns))
        return Namespace(str(r.namespace.name), dict(r.namespace.labels))

    def set_namespace_labels(self, name: str, labels: Mapping[str, str]) -> Namespace:
        """Set (or, with an empty value, remove) the given labels."""
        ns = namespace_pb2.Namespace(name=name, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=_label_mask(labels))
        r = self._call(
            self._namespaces.Update,
            namespace_pb2.UpdateNamespaceRequest(namespace=ns, update_mask=mask),
        )
        return Namespace(str(r.namespace.name), dict(r.namespace.labels))

    def delete_namespace(self, name: str) -> None:
        self._call(self._namespaces.Delete, namespace_pb2.DeleteNamespaceRequest(name=name))

    # -- containers --------------------------------------------------------------

    def list_containers(self, filters: Sequence[str] = ()) -> list[Container]:
        r = self._call(
            self._containers.List, containers_pb2.ListContainersRequest(filters=list(filters))
        )
        return [_container_out(c) for c in r.containers]

    def get_container(self, id: str) -> Container:
        r = self._call(self._containers.Get, containers_pb2.GetContainerRequest(id=id))
        return _container_out(r.container)

    def create_container(
        self,
        id: str,
        *,
        spec: Mapping[str, Any],
        image: str = "",
        runtime: str = DEFAULT_RUNTIME,
        runtime_options: tuple[str, bytes] | None = None,
        snapshotter: str = "",
        snapshot_key: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Container:
        rt = containers_pb2.Container.Runtime(name=runtime)
        if runtime_options is not None:
            rt.options.CopyFrom(_any(*runtime_options))
        c = containers_pb2.Container(
            id=id,
            image=image,
            labels=dict(labels or {}),
            runtime=rt,
            spec=_any(SPEC_TYPE_URL, json.dumps(spec).encode()),
            snapshotter=snapshotter,
            snapshot_key=snapshot_key,
        )
        r = self._call(self._containers.Create, containers_pb2.CreateContainerRequest(container=c))
        return _container_out(r.container)

    def update_container_labels(self, id: str, labels: Mapping[str, str]) -> Container:
        c = containers_pb2.Container(id=id, labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=_label_mask(labels))
        r = self._call(
            self._containers.Update,
            containers_pb2.UpdateContainerRequest(container=c, update_mask=mask),
        )
        return _container_out(r.container)

    def update_container_spec(self, id: str, spec: Mapping[str, Any]) -> Container:
        c = containers_pb2.Container(id=id, spec=_any(SPEC_TYPE_URL, json.dumps(spec).encode()))
        mask = field_mask_pb2.FieldMask(paths=["spec"])
        r = self._call(
            self._containers.Update,
            containers_pb2.UpdateContainerRequest(container=c, update_mask=mask),
        )
        return _container_out(r.container)

    def delete_container(self, id: str) -> None:
        self._call(self._containers.Delete, containers_pb2.DeleteContainerRequest(id=id))

    # -- content ------------------------------------------------------------------

    def content_info(self, digest: str) -> ContentInfo:
        r = self._call(self._content.Info, content_pb2.InfoRequest(digest=str(digest)))
        return _content_out(r.info)

    def list_content(self, filters: Sequence[str] = ()) -> list[ContentInfo]:
        out: list[ContentInfo] = []
        for r in self._stream(
            self._content.List, content_pb2.ListContentRequest(filters=list(filters))
        ):
            out.extend(_content_out(i) for i in r.info)
        return out

    def update_content_labels(self, digest: str, labels: Mapping[str, str]) -> ContentInfo:
        """Set (or, with an empty value, remove) the given labels of a blob."""
        info = content_pb2.Info(digest=str(digest), labels={k: v for k, v in labels.items() if v})
        mask = field_mask_pb2.FieldMask(paths=_label_mask(labels))
        r = self._call(self._content.Update, content_pb2.UpdateRequest(info=info, update_mask=mask))
        return _content_out(r.info)

    def delete_content(self, digest: str) -> None:
        self._call(self._content.Delete, content_pb2.DeleteContentRequest(digest=str(digest)))

    def read_content(self, digest: str, offset: int = 0, size: int = 0) -> Iterator[bytes]:
        """The blob's bytes from `offset` (`size` 0: to the end), chunk by chunk."""
        req = content_pb2.ReadContentRequest(digest=str(digest), offset=offset, size=size)
        for r in self._stream(self._content.Read, req):
            yield bytes(r.data)

    def ingest_status(self, ref: str) -> IngestStatus:
        r = self._call(self._content.Status, content_pb2.StatusRequest(ref=ref))
        return _status_out(r.status)

    def list_ingests(self, filters: Sequence[str] = ()) -> list[IngestStatus]:
        r = self._call(
            self._content.ListStatuses, content_pb2.ListStatusesRequest(filters=list(filters))
        )
        return [_status_out(s) for s in r.statuses]

    def abort_ingest(self, ref: str) -> None:
        self._call(self._content.Abort, content_pb2.AbortRequest(ref=ref))

    def open_write_stream(self) -> BidiStream:
        return BidiStream(self._content.Write, self.metadata)

    # -- images --------------------------------------------------------------------

    def list_images(self, filters: Sequence[str] = ()) -> list[Image]:
        r = self._call(self._images.List, images_pb2.ListImagesRequest(filters=list(filters)))
        return [_image_out(i) for i in r.images]

    def get_image(self, name: str) -> Image:
        r = self._call(self._images.Get, images_pb2.GetImageRequest(name=name))
        return _image_out(r.image)

    def create_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        img = images_pb2.Image(name=name, target=descriptor_in(target), labels=dict(labels or {}))
        r = self._call(self._images.Create, images_pb2.CreateImageRequest(image=img))
        return _image_out(r.image)

    def update_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        img = images_pb2.Image(name=name, target=descriptor_in(target), labels=dict(labels or {}))
        paths = ["target"] + ([f"labels.{k}" for k in labels] if labels else [])
        r = self._call(
            self._images.Update,
            images_pb2.UpdateImageRequest(
                image=img, update_mask=field_mask_pb2.FieldMask(paths=paths)
            ),
        )
        return _image_out(r.image)

    def put_image(
        self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None
    ) -> Image:
        """Create the image record, or point an existing one at `target`."""
        from skiff.errors import AlreadyExists

        try:
            return self.create_image(name, target, labels)
        except AlreadyExists:
            return self.update_image(name, target, labels)

    def delete_image(self, name: str, *, sync: bool = False) -> None:
        self._call(self._images.Delete, images_pb2.DeleteImageRequest(name=name, sync=sync))

    # -- snapshots -------------------------------------------------------------------

    def prepare_snapshot(
        self,
        snapshotter: str,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        r = self._call(
            self._snapshots.Prepare,
            snapshots_pb2.PrepareSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
            ),
        )
        return _mounts_out(r.mounts)

    def view_snapshot(
        self,
        snapshotter: str,
        key: str,
        parent: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        r = self._call(
            self._snapshots.View,
            snapshots_pb2.ViewSnapshotRequest(
                snapshotter=snapshotter, key=key, parent=parent, labels=dict(labels or {})
            ),
        )
        return _mounts_out(r.mounts)

    def snapshot_mounts(self, snapshotter: str, key: str) -> list[Mount]:
        r = self._call(
            self._snapshots.Mounts, snapshots_pb2.MountsRequest(snapshotter=snapshotter, key=key)
        )
        return _mounts_out(r.mounts)

    def commit_snapshot(
        self, snapshotter: str, name: str, key: str, labels: Mapping[str, str] | None = None
    ) -> None:
        self._call(
            self._snapshots.Commit,
            snapshots_pb2.CommitSnapshotRequest(
                snapshotter=snapshotter, name=name, key=key, labels=dict(labels or {})
            ),
        )

    def remove_snapshot(self, snapshotter: str, key: str) -> None:
        self._call(
            self._snapshots.Remove,
            snapshots_pb2.RemoveSnapshotRequest(snapshotter=snapshotter, key=key),
        )

    def stat_snapshot(self, snapshotter: str, key: str) -> SnapshotInfo:
        r = self._call(
            self._snapshots.Stat,
            snapshots_pb2.StatSnapshotRequest(snapshotter=snapshotter, key=key),
        )
        return _snapshot_out(r.info)

    def update_snapshot_labels(
        self, snapshotter: str, key: str, labels: Mapping[str, str]
    ) -> SnapshotInfo:
        info = snapshots_pb2.Info(name=key, labels={k: v for k, v in labels.items() if v})
        r = self._call(
            self._snapshots.Update,
            snapshots_pb2.UpdateSnapshotRequest(
                snapshotter=snapshotter,
                info=info,
                update_mask=field_mask_pb2.FieldMask(paths=_label_mask(labels)),
            ),
        )
        return _snapshot_out(r.info)

    def list_snapshots(self, snapshotter: str, filters: Sequence[str] = ()) -> list[SnapshotInfo]:
        out: list[SnapshotInfo] = []
        req = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter, filters=list(filters))
        for r in self._stream(self._snapshots.List, req):
            out.extend(_snapshot_out(i) for i in r.info)
        return out

    def snapshot_usage(self, snapshotter: str, key: str) -> Usage:
        r = self._call(
            self._snapshots.Usage, snapshots_pb2.UsageRequest(snapshotter=snapshotter, key=key)
        )
        return Usage(int(r.size), int(r.inodes))

    def cleanup_snapshots(self, snapshotter: str) -> None:
        self._call(self._snapshots.Cleanup, snapshots_pb2.CleanupRequest(snapshotter=snapshotter))

    # -- diff ----------------------------------------------------------------------

    def apply_diff(self, layer: Descriptor, mounts: Sequence[Mount]) -> Descriptor:
        """Apply a layer blob from the content store onto `mounts`; returns the
        uncompressed layer's descriptor (its digest is the diff ID)."""
        r = self._call(
            self._diff.Apply,
            diff_pb2.ApplyRequest(diff=descriptor_in(layer), mounts=_mounts_in(mounts)),
        )
        return descriptor_out(r.applied)

    def compute_diff(
        self,
        lower: Sequence[Mount],
        upper: Sequence[Mount],
        *,
        media_type: str = "",
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Descriptor:
        r = self._call(
            self._diff.Diff,
            diff_pb2.DiffRequest(
                left=_mounts_in(lower),
                right=_mounts_in(upper),
                media_type=media_type,
                ref=ref,
                labels=dict(labels or {}),
            ),
        )
        return descriptor_out(r.diff)

    # -- tasks ---------------------------------------------------------------------

    def create_task(
        self,
        container_id: str,
        *,
        rootfs: Sequence[Mount] = (),
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
        options: tuple[str, bytes] | None = None,
        runtime_path: str = "",
    ) -> int:
        """Create the task (its init process, not yet started); returns its pid."""
        req = tasks_pb2.CreateTaskRequest(
            container_id=container_id,
            rootfs=_mounts_in(rootfs),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
            runtime_path=runtime_path,
        )
        if options is not None:
            req.options.CopyFrom(_any(*options))
        return int(self._call(self._tasks.Create, req).pid)

    def start_task(self, container_id: str, exec_id: str = "") -> int:
        r = self._call(
            self._tasks.Start, tasks_pb2.StartRequest(container_id=container_id, exec_id=exec_id)
        )
        return int(r.pid)

    def delete_task(self, container_id: str) -> ExitStatus:
        r = self._call(self._tasks.Delete, tasks_pb2.DeleteTaskRequest(container_id=container_id))
        return ExitStatus(
            code=int(r.exit_status), exited_at=_time(r.exited_at), pid=int(r.pid), id=str(r.id)
        )

    def delete_process(self, container_id: str, exec_id: str) -> ExitStatus:
        r = self._call(
            self._tasks.DeleteProcess,
            tasks_pb2.DeleteProcessRequest(container_id=container_id, exec_id=exec_id),
        )
        return ExitStatus(
            code=int(r.exit_status), exited_at=_time(r.exited_at), pid=int(r.pid), id=str(r.id)
        )

    def get_task(self, container_id: str, exec_id: str = "") -> Process:
        r = self._call(
            self._tasks.Get, tasks_pb2.GetRequest(container_id=container_id, exec_id=exec_id)
        )
        return _process_out(r.process)

    def list_tasks(self, filter: str = "") -> list[Process]:
        r = self._call(self._tasks.List, tasks_pb2.ListTasksRequest(filter=filter))
        return [_process_out(p) for p in r.tasks]

    def kill_task(
        self, container_id: str, signal: int, *, exec_id: str = "", all: bool = False
    ) -> None:
        self._call(
            self._tasks.Kill,
            tasks_pb2.KillRequest(
                container_id=container_id, exec_id=exec_id, signal=signal, all=all
            ),
        )

    def exec_process(
        self,
        container_id: str,
        exec_id: str,
        process: Mapping[str, Any],
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
    ) -> None:
        """Add a process (an OCI runtime-spec Process) to the task; start it with start_task."""
        self._call(
            self._tasks.Exec,
            tasks_pb2.ExecProcessRequest(
                container_id=container_id,
                exec_id=exec_id,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                terminal=terminal,
                spec=_any(PROCESS_TYPE_URL, json.dumps(process).encode()),
            ),
        )

    def resize_pty(self, container_id: str, width: int, height: int, exec_id: str = "") -> None:
        self._call(
            self._tasks.ResizePty,
            tasks_pb2.ResizePtyRequest(
                container_id=container_id, exec_id=exec_id, width=width, height=height
            ),
        )

    def close_io(self, container_id: str, exec_id: str = "", *, stdin: bool = True) -> None:
        self._call(
            self._tasks.CloseIO,
            tasks_pb2.CloseIORequest(container_id=container_id, exec_id=exec_id, stdin=stdin),
        )

    def pause_task(self, container_id: str) -> None:
        self._call(self._tasks.Pause, tasks_pb2.PauseTaskRequest(container_id=container_id))

    def resume_task(self, container_id: str) -> None:
        self._call(self._tasks.Resume, tasks_pb2.ResumeTaskRequest(container_id=container_id))

    def list_pids(self, container_id: str) -> list[ProcessInfo]:
        r = self._call(self._tasks.ListPids, tasks_pb2.ListPidsRequest(container_id=container_id))
        return [
            ProcessInfo(int(p.pid), str(p.info.type_url), bytes(p.info.value)) for p in r.processes
        ]

    def metrics(self, filters: Sequence[str] = ()) -> list[Metric]:
        r = self._call(self._tasks.Metrics, tasks_pb2.MetricsRequest(filters=list(filters)))
        return [
            Metric(
                id=str(m.id),
                timestamp=_time(m.timestamp),
                data_type=str(m.data.type_url),
                data=bytes(m.data.value),
            )
            for m in r.metrics
        ]

    def update_task(
        self,
        container_id: str,
        resources: tuple[str, bytes] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        req = tasks_pb2.UpdateTaskRequest(
            container_id=container_id, annotations=dict(annotations or {})
        )
        if resources is not None:
            req.resources.CopyFrom(_any(*resources))
        self._call(self._tasks.Update, req)

    def wait_task(self, container_id: str, exec_id: str = "") -> ExitStatus:
        """Block until the process exits; no client timeout applies."""
        with mapped():
            r = self._tasks.Wait(
                tasks_pb2.WaitRequest(container_id=container_id, exec_id=exec_id),
                metadata=self.metadata,
            )
        return ExitStatus(code=int(r.exit_status), exited_at=_time(r.exited_at))

    def wait_task_async(self, container_id: str, exec_id: str = "") -> WaitFuture:
        """Start waiting now (before Start, so a quick exit is not missed)."""
        return WaitFuture(self, container_id, exec_id)

    # -- events ----------------------------------------------------------------------

    def publish_event(self, topic: str, type_url: str, payload: bytes) -> None:
        self._call(
            self._events.Publish,
            events_pb2.PublishRequest(topic=topic, event=_any(type_url, payload)),
        )

    def subscribe(self, filters: Sequence[str] = ()) -> EventStream:
        """Events from every namespace matching any filter, as they happen."""
        with mapped():
            call = self._events.Subscribe(
                events_pb2.SubscribeRequest(filters=list(filters)), metadata=self.metadata
            )
        return EventStream(call)

    # -- leases ------------------------------------------------------------------------

    def create_lease(self, id: str = "", labels: Mapping[str, str] | None = None) -> Lease:
        r = self._call(
            self._leases.Create, leases_pb2.CreateRequest(id=id, labels=dict(labels or {}))
        )
        return _lease_out(r.lease)

    def list_leases(self, filters: Sequence[str] = ()) -> list[Lease]:
        r = self._call(self._leases.List, leases_pb2.ListRequest(filters=list(filters)))
        return [_lease_out(x) for x in r.leases]

    def delete_lease(self, id: str, *, sync: bool = False) -> None:
        self._call(self._leases.Delete, leases_pb2.DeleteRequest(id=id, sync=sync))

    def add_lease_resource(self, id: str, resource: LeaseResource) -> None:
        self._call(
            self._leases.AddResource,
            leases_pb2.AddResourceRequest(
                id=id, resource=leases_pb2.Resource(id=resource.id, type=resource.type)
            ),
        )

    def delete_lease_resource(self, id: str, resource: LeaseResource) -> None:
        self._call(
            self._leases.DeleteResource,
            leases_pb2.DeleteResourceRequest(
                id=id, resource=leases_pb2.Resource(id=resource.id, type=resource.type)
            ),
        )

    def list_lease_resources(self, id: str) -> list[LeaseResource]:
        r = self._call(self._leases.ListResources, leases_pb2.ListResourcesRequest(id=id))
        return [LeaseResource(str(x.id), str(x.type)) for x in r.resources]


class WaitFuture:
    """A Wait call running in a thread; `result()` gives the exit status."""

    def __init__(self, client: Client, container_id: str, exec_id: str) -> None:
        self._result: ExitStatus | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(client, container_id, exec_id), daemon=True
        )
        self._thread.start()

    def _run(self, client: Client, container_id: str, exec_id: str) -> None:
        try:
            self._result = client.wait_task(container_id, exec_id)
        except BaseException as e:
            self._error = e
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout: float | None = None) -> ExitStatus:
        if not self._done.wait(timeout):
            raise TimeoutError("the process has not exited")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class EventStream:
    """An event subscription: iterate for envelopes; `close` ends it."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def __iter__(self) -> Iterator[Envelope]:
        import grpc

        try:
            for env in self._call:
                yield decode_envelope(env)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.CANCELLED:
                return
            raise _grpc.error_from_rpc(e) from None

    def close(self) -> None:
        self._call.cancel()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
