"""The stores every service shares, built once by main and passed in."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from skiff.containerd.content import ContentStore
from skiff.containerd.events import Exchange
from skiff.containerd.events.types import pack
from skiff.containerd.metadata.db import Metadata, Resource
from skiff.containerd.metadata.gc import Collected, collect
from skiff.containerd.metadata.snapshots import NamespacedSnapshotter
from skiff.containerd.services.context import current_lease
from skiff.errors import InvalidArgument, NotFound
from skiff.ttrpc.protobuf import Message


@dataclass
class Core:
    meta: Metadata
    content: ContentStore
    snapshotters: dict[str, NamespacedSnapshotter]
    exchange: Exchange
    gc_lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshotter(self, name: str) -> NamespacedSnapshotter:
        sn = self.snapshotters.get(name or "overlayfs")
        if sn is None:
            raise InvalidArgument(f"snapshotter not loaded: {name}: invalid argument")
        return sn

    def publish(self, ns: str, msg: Message) -> None:
        self.exchange.publish(ns, msg.TOPIC, pack(msg))

    def lease_add(self, ns: str, res: Resource) -> None:
        lease = current_lease()
        if lease:
            try:
                self.meta.add_lease_resource(ns, lease, res)
            except NotFound:
                raise NotFound(f"lease {lease!r}: not found")

    def collect_garbage(self) -> Collected:
        with self.gc_lock:
            return collect(self.meta, self.content, self.snapshotters)
