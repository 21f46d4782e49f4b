"""gRPC adapter: containerd.services.namespaces.v1.Namespaces."""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.namespaces.v1 import namespace_pb2 as pb
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Namespace
from skiff.containerd.server.common import paths_of, unary
from skiff.containerd.services.namespaces import NamespacesService


def _out(ns: Namespace) -> Any:
    return pb.Namespace(name=ns.name, labels=dict(ns.labels))


class NamespacesAdapter:
    def __init__(self, service: NamespacesService) -> None:
        self.s = service

    @unary
    def Get(self, req: Any, ctx: Any) -> Any:
        return pb.GetNamespaceResponse(namespace=_out(self.s.get(req.name)))

    @unary
    def List(self, req: Any, ctx: Any) -> Any:
        flt = parse_filters([req.filter] if req.filter else [])
        items = [
            n for n in self.s.list() if flt.match(labels_lookup({"name": n.name}, dict(n.labels)))
        ]
        return pb.ListNamespacesResponse(namespaces=[_out(n) for n in items])

    @unary
    def Create(self, req: Any, ctx: Any) -> Any:
        ns = self.s.create(req.namespace.name, dict(req.namespace.labels))
        return pb.CreateNamespaceResponse(namespace=_out(ns))

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        ns = self.s.update(
            req.namespace.name, dict(req.namespace.labels), paths_of(req.update_mask)
        )
        return pb.UpdateNamespaceResponse(namespace=_out(ns))

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        self.s.delete(req.name)
        return empty_pb2.Empty()


def register(server: Any, service: NamespacesService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Namespaces"], NamespacesAdapter(service))
