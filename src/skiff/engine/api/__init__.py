"""The Engine API's routes, one module per area, over the daemon's services."""

from __future__ import annotations

from skiff.engine.daemon import Daemon
from skiff.engine.http.server import Router


def build_router(daemon: Daemon) -> Router:
    from skiff.engine.api import system

    router = Router()
    system.register(router, daemon)
    for name in ("containers", "images", "exec", "volumes", "networks", "build"):
        try:
            module = __import__(f"skiff.engine.api.{name}", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name != f"skiff.engine.api.{name}":
                raise
            continue
        module.register(router, daemon)
    return router
