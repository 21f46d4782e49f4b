"""containerd.services.containers.v1: container records (spec, runtime,
snapshot key, labels, extensions) per namespace."""

from __future__ import annotations

from collections.abc import Sequence

from skiff.containerd.events import types as et
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Container
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core


def _fields(c: Container) -> dict[str, str]:
    return {
        "id": c.id,
        "image": c.image,
        "runtime.name": c.runtime,
        "snapshotter": c.snapshotter,
        "snapshotkey": c.snapshot_key,
    }


class ContainersService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def get(self, cid: str) -> Container:
        return self.core.meta.get_container(required_namespace(), cid)

    def list(self, filters: Sequence[str] = ()) -> list[Container]:
        flt = parse_filters(filters)
        return [
            c
            for c in self.core.meta.list_containers(required_namespace())
            if flt.match(labels_lookup(_fields(c), dict(c.labels)))
        ]

    def create(self, c: Container) -> Container:
        ns = required_namespace()
        created = self.core.meta.create_container(ns, c)
        self.core.publish(ns, et.ContainerCreate(id=c.id, image=c.image))
        return created

    def update(self, c: Container, paths: Sequence[str]) -> Container:
        ns = required_namespace()
        updated = self.core.meta.update_container(ns, c, paths)
        self.core.publish(ns, et.ContainerUpdate(id=c.id, image=updated.image))
        return updated

    def delete(self, cid: str) -> None:
        ns = required_namespace()
        self.core.meta.delete_container(ns, cid)
        self.core.publish(ns, et.ContainerDelete(id=cid))
