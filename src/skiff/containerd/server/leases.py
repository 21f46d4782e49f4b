"""gRPC adapter: containerd.services.leases.v1.Leases."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.leases.v1 import leases_pb2 as pb
from skiff.containerd.metadata.db import Lease, Resource
from skiff.containerd.server.common import ts, unary
from skiff.containerd.services.leases import LeasesService


def _out(lease: Lease) -> Any:
    return pb.Lease(id=lease.id, labels=dict(lease.labels), created_at=ts(lease.created_at))


def _res(m: Any) -> Resource:
    return Resource(m.id, m.type)


class LeasesAdapter:
    def __init__(self, service: LeasesService) -> None:
        self.s = service

    @unary
    def Create(self, req: Any, ctx: Any) -> Any:
        return pb.CreateResponse(lease=_out(self.s.create(req.id, dict(req.labels))))

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        self.s.delete(req.id, sync=req.sync)
        return empty_pb2.Empty()

    @unary
    def List(self, req: Any, ctx: Any) -> Any:
        return pb.ListResponse(leases=[_out(x) for x in self.s.list(list(req.filters))])

    @unary
    def AddResource(self, req: Any, ctx: Any) -> Any:
        self.s.add_resource(req.id, _res(req.resource))
        return empty_pb2.Empty()

    @unary
    def DeleteResource(self, req: Any, ctx: Any) -> Any:
        self.s.delete_resource(req.id, _res(req.resource))
        return empty_pb2.Empty()

    @unary
    def ListResources(self, req: Any, ctx: Any) -> Any:
        return pb.ListResourcesResponse(
            resources=[pb.Resource(id=r.id, type=r.type) for r in self.s.list_resources(req.id)]
        )


def register(server: Any, service: LeasesService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Leases"], LeasesAdapter(service))
