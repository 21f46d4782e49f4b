"""gRPC adapter: containerd.services.snapshots.v1.Snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2 as pb
from skiff.containerd.server.common import mounts_out, paths_of, streaming, ts, unary
from skiff.containerd.services.snapshots import SnapshotsService
from skiff.containerd.snapshots import Info

_LIST_BATCH = 100


def _info(i: Info) -> Any:
    return pb.Info(
        name=i.name,
        parent=i.parent,
        kind=int(i.kind),
        created_at=ts(int(i.created_at * 1e9)),
        updated_at=ts(int(i.updated_at * 1e9)),
        labels=dict(i.labels),
    )


class SnapshotsAdapter:
    def __init__(self, service: SnapshotsService) -> None:
        self.s = service

    @unary
    def Prepare(self, req: Any, ctx: Any) -> Any:
        m = self.s.prepare(req.snapshotter, req.key, req.parent, dict(req.labels))
        return pb.PrepareSnapshotResponse(mounts=mounts_out(m))

    @unary
    def View(self, req: Any, ctx: Any) -> Any:
        m = self.s.view(req.snapshotter, req.key, req.parent, dict(req.labels))
        return pb.ViewSnapshotResponse(mounts=mounts_out(m))

    @unary
    def Mounts(self, req: Any, ctx: Any) -> Any:
        return pb.MountsResponse(mounts=mounts_out(self.s.mounts(req.snapshotter, req.key)))

    @unary
    def Commit(self, req: Any, ctx: Any) -> Any:
        self.s.commit(req.snapshotter, req.name, req.key, dict(req.labels))
        return empty_pb2.Empty()

    @unary
    def Remove(self, req: Any, ctx: Any) -> Any:
        self.s.remove(req.snapshotter, req.key)
        return empty_pb2.Empty()

    @unary
    def Stat(self, req: Any, ctx: Any) -> Any:
        return pb.StatSnapshotResponse(info=_info(self.s.stat(req.snapshotter, req.key)))

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        info = self.s.update(
            req.snapshotter, req.info.name, dict(req.info.labels), paths_of(req.update_mask)
        )
        return pb.UpdateSnapshotResponse(info=_info(info))

    @streaming
    def List(self, req: Any, ctx: Any) -> Iterator[Any]:
        items = self.s.list(req.snapshotter, list(req.filters))
        for i in range(0, len(items), _LIST_BATCH):
            yield pb.ListSnapshotsResponse(info=[_info(x) for x in items[i : i + _LIST_BATCH]])

    @unary
    def Usage(self, req: Any, ctx: Any) -> Any:
        u = self.s.usage(req.snapshotter, req.key)
        return pb.UsageResponse(size=u.size, inodes=u.inodes)

    @unary
    def Cleanup(self, req: Any, ctx: Any) -> Any:
        self.s.cleanup(req.snapshotter)
        return empty_pb2.Empty()


def register(server: Any, service: SnapshotsService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Snapshots"], SnapshotsAdapter(service))
