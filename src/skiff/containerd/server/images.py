"""gRPC adapter: containerd.services.images.v1.Images."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.images.v1 import images_pb2 as pb
from skiff.containerd.metadata.db import Image, Target
from skiff.containerd.server.common import descriptor_out, paths_of, ts, unary
from skiff.containerd.services.images import ImagesService


def _out(i: Image) -> Any:
    t = i.target
    return pb.Image(
        name=i.name,
        labels=dict(i.labels),
        target=descriptor_out(t.media_type, t.digest, t.size, t.annotations),
        created_at=ts(i.created_at),
        updated_at=ts(i.updated_at),
    )


def _in(m: Any) -> Image:
    t = m.target
    return Image(
        name=m.name,
        labels=dict(m.labels),
        target=Target(
            media_type=t.media_type, digest=t.digest, size=t.size, annotations=dict(t.annotations)
        ),
    )


class ImagesAdapter:
    def __init__(self, service: ImagesService) -> None:
        self.s = service

    @unary
    def Get(self, req: Any, ctx: Any) -> Any:
        return pb.GetImageResponse(image=_out(self.s.get(req.name)))

    @unary
    def List(self, req: Any, ctx: Any) -> Any:
        return pb.ListImagesResponse(images=[_out(i) for i in self.s.list(list(req.filters))])

    @unary
    def Create(self, req: Any, ctx: Any) -> Any:
        return pb.CreateImageResponse(image=_out(self.s.create(_in(req.image))))

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        image = self.s.update(_in(req.image), paths_of(req.update_mask))
        return pb.UpdateImageResponse(image=_out(image))

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        self.s.delete(req.name, sync=req.sync)
        return empty_pb2.Empty()


def register(server: Any, service: ImagesService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Images"], ImagesAdapter(service))
