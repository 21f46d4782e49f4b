"""containerd.services.snapshots.v1: the snapshotters (overlayfs by
default, native) through namespaces; leases hold what is prepared."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from skiff.containerd.events import types as et
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Resource, apply_label_paths
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core
from skiff.containerd.snapshots import Info, Mount, Usage
from skiff.errors import InvalidArgument

_KIND_NAMES = {1: "view", 2: "active", 3: "committed"}


class SnapshotsService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def prepare(
        self, snapshotter: str, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        ns = required_namespace()
        sn = self.core.snapshotter(snapshotter)
        self.core.meta.ensure_namespace(ns)
        mounts = sn.prepare(ns, key, parent, labels)
        self.core.lease_add(ns, Resource(key, f"snapshots/{sn.name}"))
        self.core.publish(ns, et.SnapshotPrepare(key=key, parent=parent))
        return mounts

    def view(
        self, snapshotter: str, key: str, parent: str = "", labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        ns = required_namespace()
        sn = self.core.snapshotter(snapshotter)
        self.core.meta.ensure_namespace(ns)
        mounts = sn.view(ns, key, parent, labels)
        self.core.lease_add(ns, Resource(key, f"snapshots/{sn.name}"))
        return mounts

    def mounts(self, snapshotter: str, key: str) -> list[Mount]:
        return self.core.snapshotter(snapshotter).mounts(required_namespace(), key)

    def commit(
        self, snapshotter: str, name: str, key: str, labels: Mapping[str, str] | None = None
    ) -> None:
        ns = required_namespace()
        sn = self.core.snapshotter(snapshotter)
        sn.commit(ns, name, key, labels)
        self.core.lease_add(ns, Resource(name, f"snapshots/{sn.name}"))
        self.core.publish(ns, et.SnapshotCommit(key=key, name=name))

    def remove(self, snapshotter: str, key: str) -> None:
        ns = required_namespace()
        self.core.snapshotter(snapshotter).remove(ns, key)
        self.core.publish(ns, et.SnapshotRemove(key=key))

    def stat(self, snapshotter: str, key: str) -> Info:
        return self.core.snapshotter(snapshotter).stat(required_namespace(), key)

    def update(
        self, snapshotter: str, key: str, labels: Mapping[str, str], paths: Sequence[str]
    ) -> Info:
        ns = required_namespace()
        sn = self.core.snapshotter(snapshotter)
        for path in paths:
            if not (path == "labels" or path.startswith("labels.")):
                raise InvalidArgument(f"cannot update {path!r} field on snapshot {key!r}")
        old = sn.stat(ns, key)
        return sn.update(ns, key, apply_label_paths(old.labels, labels, paths or ["labels"]))

    def list(self, snapshotter: str, filters: Sequence[str] = ()) -> list[Info]:
        flt = parse_filters(filters)
        out = []
        for info in self.core.snapshotter(snapshotter).walk(required_namespace()):
            fields = {
                "name": info.name,
                "parent": info.parent,
                "kind": _KIND_NAMES.get(int(info.kind), "unknown"),
            }
            if flt.match(labels_lookup(fields, dict(info.labels))):
                out.append(info)
        return out

    def usage(self, snapshotter: str, key: str) -> Usage:
        return self.core.snapshotter(snapshotter).usage(required_namespace(), key)

    def cleanup(self, snapshotter: str) -> None:
        self.core.snapshotter(snapshotter).backend.cleanup()
