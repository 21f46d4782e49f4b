"""The daemon object: configuration, the supervisor, the event bus and the services.

One instance per skiffd, built in main and handed to the API routes. The
services keep what they know in memory and on disk under the data root;
nothing per request re-reads what the daemon already holds.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

from skiff.engine.config import DaemonConfig
from skiff.engine.events import EventBus
from skiff.engine.supervisor import Supervisor

log = logging.getLogger("skiffd")


class Daemon:
    def __init__(self, config: DaemonConfig, supervisor: Supervisor):
        self.config = config
        self.supervisor = supervisor
        self.events = EventBus()
        self.started = time.time()
        self.ready = asyncio.Event()
        self.id = self._engine_id()
        # services, attached as the layers that provide them land (containers, images, ...)
        self.services: dict[str, Any] = {}

    def _engine_id(self) -> str:
        path = os.path.join(self.config.data_root, "engine-id")
        try:
            with open(path) as f:
                return f.read().strip()
        except FileNotFoundError:
            engine_id = str(uuid.uuid4())
            os.makedirs(self.config.data_root, exist_ok=True)
            with open(path, "w") as f:
                f.write(engine_id)
            return engine_id

    async def start(self) -> None:
        """Connect to (or start) the supervisor, then bring every service up."""
        await self.supervisor.start()
        for name, service in self.services.items():
            start = getattr(service, "start", None)
            if start is not None:
                log.info("starting %s", name)
                await start()
        self.ready.set()

    async def stop(self) -> None:
        for service in reversed(list(self.services.values())):
            stop = getattr(service, "stop", None)
            if stop is not None:
                try:
                    await stop()
                except Exception:
                    log.exception("stopping a service failed")
        await self.supervisor.stop()

    def counts(self) -> dict[str, int]:
        result = {
            "Containers": 0,
            "ContainersRunning": 0,
            "ContainersPaused": 0,
            "ContainersStopped": 0,
            "Images": 0,
        }
        for service in self.services.values():
            counts = getattr(service, "counts", None)
            if counts is not None:
                result.update(counts())
        return result
