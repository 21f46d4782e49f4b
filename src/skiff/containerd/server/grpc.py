"""Wiring of skiff-containerd: stores, services, task manager, the ttrpc
event socket and the gRPC server (ours over h2, or grpcio), built from a resolved config. The only
place that knows every piece (main.py only parses flags and waits)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import Any

from skiff.containerd.content import ContentStore
from skiff.containerd.events import Exchange
from skiff.containerd.events.forward import ForwardServer
from skiff.containerd.metadata.db import Metadata
from skiff.containerd.metadata.snapshots import NamespacedSnapshotter
from skiff.containerd.server import (
    containers,
    content,
    diff,
    events,
    health,
    images,
    introspection,
    leases,
    namespaces,
    snapshots,
    tasks,
)
from skiff.containerd.services.containers import ContainersService
from skiff.containerd.services.content import ContentService
from skiff.containerd.services.core import Core
from skiff.containerd.services.diff import DiffService
from skiff.containerd.services.images import ImagesService
from skiff.containerd.services.introspection import IntrospectionService
from skiff.containerd.services.leases import LeasesService
from skiff.containerd.services.namespaces import NamespacesService
from skiff.containerd.services.snapshots import SnapshotsService
from skiff.containerd.services.tasks import TasksService
from skiff.containerd.snapshots import SNAPSHOTTERS
from skiff.containerd.tasks.manager import TaskManager
from skiff.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger("skiff.containerd")


def _listening(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _server(g: dict[str, Any]) -> Any:
    """The gRPC server named by `[grpc] server`: "h2" (ours, over the h2
    package) or "grpcio". Only the chosen one is imported."""
    kind = str(g.get("server", "grpcio"))
    args = (int(g["max_workers"]), int(g["max_recv_message_size"]), int(g["max_send_message_size"]))
    if kind == "h2":
        from skiff.containerd.server.h2server import H2Server

        return H2Server(*args)
    if kind == "grpcio":
        from skiff.containerd.server.grpcio_server import GrpcioServer

        return GrpcioServer(*args)
    raise InvalidArgument(f"grpc server {kind!r} is not known (h2, grpcio)")


class Daemon:
    """Everything one skiff-containerd runs; `close` leaves the shims running."""

    def __init__(self, config: dict[str, Any], publish_binary: str) -> None:
        self.config = config
        root, state = config["root"], config["state"]
        address = config["grpc"]["address"]
        ttrpc_address = config["ttrpc"]["address"]
        for d in (root, state, os.path.dirname(address)):
            os.makedirs(d, 0o711, exist_ok=True)
        if _listening(address):
            raise FailedPrecondition(f"address {address}: another daemon is listening there")
        self.meta = Metadata(os.path.join(root, "io.containerd.metadata.v1.sqlite", "meta.db"))
        store = ContentStore(os.path.join(root, "io.containerd.content.v1.content"))
        enabled = list(config["snapshotters"]["enabled"])
        snaps: dict[str, NamespacedSnapshotter] = {}
        for name in enabled:
            cls = SNAPSHOTTERS.get(name)
            if cls is None:
                raise InvalidArgument(f"snapshotter {name!r} is not known")
            snaps[name] = NamespacedSnapshotter(
                name, cls(os.path.join(root, f"io.containerd.snapshotter.v1.{name}"))
            )
        self.exchange = Exchange()
        core = Core(self.meta, store, snaps, self.exchange)
        self.core = core
        self.forward = ForwardServer(ttrpc_address, self.exchange)
        from skiff.containerd.config import shims

        self.tasks = TaskManager(
            root=root,
            state=state,
            grpc_address=address,
            ttrpc_address=ttrpc_address,
            publish_binary=publish_binary,
            publish=self.exchange.publish,
            shims=shims(config),
        )
        restored = self.tasks.restore()
        if restored:
            log.info("found %d task(s) of an earlier run", restored)
        self.introspection = IntrospectionService(root, state, enabled)
        self.server = _server(config["grpc"])
        namespaces.register(self.server, NamespacesService(core))
        images.register(self.server, ImagesService(core))
        containers.register(self.server, ContainersService(core))
        content.register(self.server, ContentService(core))
        snapshots.register(self.server, SnapshotsService(core))
        leases.register(self.server, LeasesService(core))
        diff.register(self.server, DiffService(core))
        tasks.register(self.server, TasksService(core, self.tasks))
        events.register(self.server, self.exchange)
        introspection.register(self.server, self.introspection)
        health.register(self.server)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        self.server.add_insecure_port("unix:" + address)
        self.address = address

    def start(self) -> None:
        self.server.start()
        os.chmod(self.address, 0o660)
        log.info("skiff-containerd serving on %s", self.address)

    def close(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()
        self.tasks.close()
        self.forward.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        self.meta.close()
