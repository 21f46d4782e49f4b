"""daemon.services["networks"]: skiffd's NetworkManager, owned and driven from asyncio.

skiffd -> networks (this) -> NetworkManager (blocking, thread-safe). The
manager's state lives under data-root/network; every blocking call runs in a
worker thread. The service starts before the container service, so the
containers that come back after a restart find their endpoints reconciled
(those of containers that died meanwhile are released by `start`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from skiff.engine.network.ipam import DEFAULT_POOLS, AddressPool, parse_pool
from skiff.engine.network.manager import NetworkManager
from skiff.errors import InvalidArgument

log = logging.getLogger("skiffd.networks")

T = TypeVar("T")


def address_pools(raw: list[Any]) -> list[AddressPool]:
    """daemon.json's default-address-pools ([{"base":..,"size":..}]) or the flag's text."""
    pools = []
    for item in raw or []:
        if isinstance(item, str):
            pools.append(parse_pool(item))
        elif isinstance(item, dict):
            pools.append(parse_pool(f"base={item.get('base', '')},size={item.get('size', 24)}"))
        else:
            raise InvalidArgument(f"invalid default address pool {item!r}")
    return pools or list(DEFAULT_POOLS)


class NetworkService:
    def __init__(self, daemon: Any) -> None:
        cfg = daemon.config
        # pyroute2 logs every netlink message at debug level
        logging.getLogger("pyroute2").setLevel(logging.WARNING)
        self.daemon = daemon
        self.netns_dir = os.path.join(cfg.exec_root, "netns")
        self.manager = NetworkManager(
            os.path.join(cfg.data_root, "network"),
            bridge_name=cfg.bridge or "skiff0",
            bip=cfg.bip,
            address_pools=address_pools(cfg.default_address_pools),
            userland_proxy=cfg.userland_proxy,
            iptables=cfg.iptables,
        )
        self.started = asyncio.Event()
        self.error: Exception | None = None

    @property
    def has_default_bridge(self) -> bool:
        return self.manager.has_default_bridge

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def start(self) -> None:
        try:
            report = await self.call(self.manager.start)
        except Exception as e:
            # the rest of the engine still serves; networked containers fail with this
            log.error("networking failed to start: %s", e)
            self.error = e
            self.started.set()
            return
        if report.stale_endpoints or report.removed_links:
            log.info(
                "networks reconciled: %d stale endpoints released, %d stray links removed",
                report.stale_endpoints,
                report.removed_links,
            )
        self.started.set()

    async def stop(self) -> None:
        await self.call(self.manager.close)
