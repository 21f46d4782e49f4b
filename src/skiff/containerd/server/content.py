"""gRPC adapter: containerd.services.content.v1.Content (Write is a
bidirectional stream; Read and List stream their answers)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.content.v1 import content_pb2 as pb
from skiff.containerd.content import Status
from skiff.containerd.server.common import paths_of, streaming, ts, unary
from skiff.containerd.services.content import ContentService, Info, WriteRequest

_LIST_BATCH = 100


def _info(i: Info) -> Any:
    return pb.Info(
        digest=i.digest,
        size=i.size,
        created_at=ts(i.created_at),
        updated_at=ts(i.updated_at),
        labels=dict(i.labels),
    )


def _status(s: Status) -> Any:
    return pb.Status(
        started_at=ts(int(s.started_at * 1e9)),
        updated_at=ts(int(s.updated_at * 1e9)),
        ref=s.ref,
        offset=s.offset,
        total=s.total,
        expected=str(s.expected or ""),
    )


class ContentAdapter:
    def __init__(self, service: ContentService) -> None:
        self.s = service

    @unary
    def Info(self, req: Any, ctx: Any) -> Any:
        return pb.InfoResponse(info=_info(self.s.info(req.digest)))

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        info = self.s.update(req.info.digest, dict(req.info.labels), paths_of(req.update_mask))
        return pb.UpdateResponse(info=_info(info))

    @streaming
    def List(self, req: Any, ctx: Any) -> Iterator[Any]:
        items = self.s.list(list(req.filters))
        for i in range(0, len(items), _LIST_BATCH):
            yield pb.ListContentResponse(info=[_info(x) for x in items[i : i + _LIST_BATCH]])

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        self.s.delete(req.digest)
        return empty_pb2.Empty()

    @streaming
    def Read(self, req: Any, ctx: Any) -> Iterator[Any]:
        offset = req.offset
        for chunk in self.s.read(req.digest, req.offset, req.size):
            yield pb.ReadContentResponse(offset=offset, data=chunk)
            offset += len(chunk)

    @unary
    def Status(self, req: Any, ctx: Any) -> Any:
        return pb.StatusResponse(status=_status(self.s.status(req.ref)))

    @unary
    def ListStatuses(self, req: Any, ctx: Any) -> Any:
        return pb.ListStatusesResponse(
            statuses=[_status(s) for s in self.s.list_statuses(list(req.filters))]
        )

    @streaming
    def Write(self, requests: Iterator[Any], ctx: Any) -> Iterator[Any]:
        decoded = (
            WriteRequest(
                action=r.action,
                ref=r.ref,
                total=r.total,
                expected=r.expected,
                offset=r.offset,
                data=r.data,
                labels=dict(r.labels),
            )
            for r in requests
        )
        for resp in self.s.write(decoded):
            yield pb.WriteContentResponse(
                action=resp.action,
                started_at=ts(resp.started_at),
                updated_at=ts(resp.updated_at),
                offset=resp.offset,
                total=resp.total,
                digest=resp.digest,
            )

    @unary
    def Abort(self, req: Any, ctx: Any) -> Any:
        self.s.abort(req.ref)
        return empty_pb2.Empty()


def register(server: Any, service: ContentService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Content"], ContentAdapter(service))
