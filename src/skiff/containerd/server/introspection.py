"""gRPC adapters: containerd.services.introspection.v1.Introspection and
containerd.services.version.v1.Version."""

from __future__ import annotations

from typing import Any

from skiff.api.gen.containerd.services.introspection.v1 import introspection_pb2 as pb
from skiff.api.gen.containerd.services.version.v1 import version_pb2 as vpb
from skiff.api.gen.containerd.types import platform_pb2
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.server.common import unary
from skiff.containerd.services.introspection import IntrospectionService


class IntrospectionAdapter:
    def __init__(self, service: IntrospectionService) -> None:
        self.s = service

    @unary
    def Plugins(self, req: Any, ctx: Any) -> Any:
        flt = parse_filters(list(req.filters))
        out = []
        for p in self.s.list_plugins():
            fields = {"type": p.type, "id": p.id}
            if not flt.match(labels_lookup(fields, {})):
                continue
            out.append(
                pb.Plugin(
                    type=p.type,
                    id=p.id,
                    requires=list(p.requires),
                    platforms=[
                        platform_pb2.Platform(os=o, architecture=a, variant=v)
                        for o, a, v in p.platforms
                    ],
                    exports=dict(p.exports),
                    capabilities=list(p.capabilities),
                )
            )
        return pb.PluginsResponse(plugins=out)

    @unary
    def Server(self, req: Any, ctx: Any) -> Any:
        return pb.ServerResponse(uuid=self.s.uuid)


class VersionAdapter:
    def __init__(self, service: IntrospectionService) -> None:
        self.s = service

    @unary
    def Version(self, req: Any, ctx: Any) -> Any:
        version, revision = self.s.version()
        return vpb.VersionResponse(version=version, revision=revision)


def register(server: Any, service: IntrospectionService) -> None:
    server.add_service(
        pb.DESCRIPTOR.services_by_name["Introspection"], IntrospectionAdapter(service)
    )
    server.add_service(vpb.DESCRIPTOR.services_by_name["Version"], VersionAdapter(service))
