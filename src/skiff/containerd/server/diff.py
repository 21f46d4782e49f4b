"""gRPC adapter: containerd.services.diff.v1.Diff."""

from __future__ import annotations

from typing import Any

from skiff.api.gen.containerd.services.diff.v1 import diff_pb2 as pb
from skiff.containerd.server.common import descriptor_out, mounts_in, unary
from skiff.containerd.services.diff import Descriptor, DiffService


def _out(d: Descriptor) -> Any:
    return descriptor_out(d.media_type, d.digest, d.size, d.annotations)


class DiffAdapter:
    def __init__(self, service: DiffService) -> None:
        self.s = service

    @unary
    def Apply(self, req: Any, ctx: Any) -> Any:
        d = req.diff
        desc = Descriptor(media_type=d.media_type, digest=d.digest, size=d.size)
        return pb.ApplyResponse(applied=_out(self.s.apply(desc, mounts_in(req.mounts))))

    @unary
    def Diff(self, req: Any, ctx: Any) -> Any:
        desc = self.s.diff(
            mounts_in(req.left),
            mounts_in(req.right),
            media_type=req.media_type,
            ref=req.ref,
            labels=dict(req.labels),
        )
        return pb.DiffResponse(diff=_out(desc))


def register(server: Any, service: DiffService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Diff"], DiffAdapter(service))
