"""containerd.services.leases.v1: leases hold content, ingests and snapshots
against the collector while a client works (a pull, an unpack)."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping, Sequence

from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Lease, Resource
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core


class LeasesService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def create(self, lease_id: str, labels: Mapping[str, str]) -> Lease:
        return self.core.meta.create_lease(
            required_namespace(), lease_id or secrets.token_hex(8), labels
        )

    def delete(self, lease_id: str, *, sync: bool = False) -> None:
        self.core.meta.delete_lease(required_namespace(), lease_id)
        self.core.collect_garbage()

    def list(self, filters: Sequence[str] = ()) -> builtins.list[Lease]:
        flt = parse_filters(filters)
        return [
            lease
            for lease in self.core.meta.list_leases(required_namespace())
            if flt.match(labels_lookup({"id": lease.id}, dict(lease.labels)))
        ]

    def add_resource(self, lease_id: str, res: Resource) -> None:
        self.core.meta.add_lease_resource(required_namespace(), lease_id, res)

    def delete_resource(self, lease_id: str, res: Resource) -> None:
        self.core.meta.delete_lease_resource(required_namespace(), lease_id, res)
        self.core.collect_garbage()

    def list_resources(self, lease_id: str) -> builtins.list[Resource]:
        return self.core.meta.list_lease_resources(required_namespace(), lease_id)
