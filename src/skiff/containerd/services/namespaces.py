"""containerd.services.namespaces.v1: namespaces and their labels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from skiff.containerd.events import types as et
from skiff.containerd.metadata.db import Namespace
from skiff.containerd.services.core import Core
from skiff.errors import NotFound


class NamespacesService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def get(self, name: str) -> Namespace:
        """As containerd 1.6: a namespace nothing was stored in yet is
        answered with no labels, not NotFound. Debian's dockerd asks for its
        `moby` namespace's labels before it creates anything, and stops if
        this call fails."""
        try:
            return self.core.meta.get_namespace(name)
        except NotFound:
            return Namespace(name=name)

    def list(self) -> list[Namespace]:
        return self.core.meta.list_namespaces()

    def create(self, name: str, labels: Mapping[str, str]) -> Namespace:
        ns = self.core.meta.create_namespace(name, labels)
        self.core.publish(name, et.NamespaceCreate(name=name))
        return ns

    def update(self, name: str, labels: Mapping[str, str], paths: Sequence[str]) -> Namespace:
        return self.core.meta.update_namespace(name, labels, paths)

    def delete(self, name: str) -> None:
        # what only leases or GC still hold must not keep a namespace alive
        self.core.collect_garbage()
        self.core.meta.delete_namespace(name)
        self.core.publish(name, et.NamespaceDelete(name=name))
