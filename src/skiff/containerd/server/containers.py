"""gRPC adapter: containerd.services.containers.v1.Containers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.containers.v1 import containers_pb2 as pb
from skiff.containerd.metadata.db import Container
from skiff.containerd.server.common import any_in, any_out, paths_of, streaming, ts, unary
from skiff.containerd.services.containers import ContainersService


def _out(c: Container) -> Any:
    return pb.Container(
        id=c.id,
        labels=dict(c.labels),
        image=c.image,
        runtime=pb.Container.Runtime(name=c.runtime, options=any_out(c.runtime_options)),
        spec=any_out(c.spec),
        snapshotter=c.snapshotter,
        snapshot_key=c.snapshot_key,
        created_at=ts(c.created_at),
        updated_at=ts(c.updated_at),
        extensions={k: any_out(v) for k, v in c.extensions.items()},
    )


def _in(m: Any) -> Container:
    return Container(
        id=m.id,
        labels=dict(m.labels),
        image=m.image,
        runtime=m.runtime.name if m.HasField("runtime") else "",
        runtime_options=any_in(m.runtime.options) if m.runtime.HasField("options") else None,
        spec=any_in(m.spec) if m.HasField("spec") else None,
        snapshotter=m.snapshotter,
        snapshot_key=m.snapshot_key,
        extensions={k: a for k, v in m.extensions.items() if (a := any_in(v)) is not None},
    )


class ContainersAdapter:
    def __init__(self, service: ContainersService) -> None:
        self.s = service

    @unary
    def Get(self, req: Any, ctx: Any) -> Any:
        return pb.GetContainerResponse(container=_out(self.s.get(req.id)))

    @unary
    def List(self, req: Any, ctx: Any) -> Any:
        return pb.ListContainersResponse(
            containers=[_out(c) for c in self.s.list(list(req.filters))]
        )

    @streaming
    def ListStream(self, req: Any, ctx: Any) -> Iterator[Any]:
        for c in self.s.list(list(req.filters)):
            yield pb.ListContainerMessage(container=_out(c))

    @unary
    def Create(self, req: Any, ctx: Any) -> Any:
        return pb.CreateContainerResponse(container=_out(self.s.create(_in(req.container))))

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        c = self.s.update(_in(req.container), paths_of(req.update_mask))
        return pb.UpdateContainerResponse(container=_out(c))

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        self.s.delete(req.id)
        return empty_pb2.Empty()


def register(server: Any, service: ContainersService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Containers"], ContainersAdapter(service))
