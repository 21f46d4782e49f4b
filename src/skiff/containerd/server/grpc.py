"""Wiring of skiff-containerd: stores, services, task manager, the ttrpc
event socket and the gRPC server, built from a resolved config. The only
place that knows every piece (main.py only parses flags and waits)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

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
        g = config["grpc"]
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=int(g["max_workers"]), thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", int(g["max_recv_message_size"])),
                ("grpc.max_send_message_length", int(g["max_send_message_size"])),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=None,
        )
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
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)
        self.server.add_insecure_port("unix:" + address)
        self.address = address

    def start(self) -> None:
        self.server.start()
        os.chmod(self.address, 0o660)
        log.info("skiff-containerd serving on %s", self.address)

    def wait(self) -> None:
        self.server.wait_for_termination()

    def close(self, grace: float = 2.0) -> None:
        self.server.stop(grace).wait()
        self.tasks.close()
        self.forward.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        self.meta.close()
