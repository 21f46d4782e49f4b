"""containerd.services.introspection.v1 and version.v1: what this server is
and which plugins it runs (answers are fixed at start)."""

from __future__ import annotations

import os
import platform
import uuid
from dataclasses import dataclass, field

VERSION = "1.6.20+skiff.0.1.0"
REVISION = "skiff"


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugin:
    type: str
    id: str
    requires: tuple[str, ...] = ()
    exports: dict[str, str] = field(default_factory=dict)
    capabilities: tuple[str, ...] = ()
    platforms: tuple[tuple[str, str, str], ...] = ()


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)


def server_uuid(root: str) -> str:
    """A uuid kept under the root, so that it names this installation."""
    path = os.path.join(root, "uuid")
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        value = str(uuid.uuid4())
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(value)
        os.rename(tmp, path)
        return value


class IntrospectionService:
    def __init__(self, root: str, state: str, snapshotters: list[str]) -> None:
        self.uuid = server_uuid(root)
        here = (("linux", _arch(), ""),)
        plugins = [Plugin(type="io.containerd.content.v1", id="content")]
        for name in snapshotters:
            plugins.append(
                Plugin(
                    type="io.containerd.snapshotter.v1",
                    id=name,
                    platforms=here,
                    exports={"root": os.path.join(root, f"io.containerd.snapshotter.v1.{name}")},
                )
            )
        plugins += [
            Plugin(
                type="io.containerd.metadata.v1",
                id="bolt",
                requires=("io.containerd.content.v1", "io.containerd.snapshotter.v1"),
            ),
            Plugin(
                type="io.containerd.differ.v1",
                id="walking",
                requires=("io.containerd.metadata.v1",),
                platforms=here,
            ),
            Plugin(type="io.containerd.gc.v1", id="scheduler"),
            Plugin(
                type="io.containerd.lease.v1", id="manager", requires=("io.containerd.metadata.v1",)
            ),
            Plugin(
                type="io.containerd.runtime.v2",
                id="task",
                requires=("io.containerd.event.v1",),
                platforms=here,
            ),
            Plugin(type="io.containerd.event.v1", id="exchange"),
        ]
        for svc in (
            "containers",
            "content",
            "diff",
            "events",
            "images",
            "introspection",
            "leases",
            "namespaces",
            "snapshots",
            "tasks",
            "version",
        ):
            plugins.append(Plugin(type="io.containerd.grpc.v1", id=svc))
        self.plugins = plugins

    def list_plugins(self) -> list[Plugin]:
        return list(self.plugins)

    def version(self) -> tuple[str, str]:
        return VERSION, REVISION
