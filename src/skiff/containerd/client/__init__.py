"""skiff.containerd.client: the typed client of the containerd gRPC API, what
skiffd and skiff-ctr use to drive skiff-containerd (or Debian's containerd).

    Client            one method per API call, dataclasses in and out
    images            pull / push / import / export / unpack, done client-side
    containers        ctr-style spec generation, containers, tasks and FIFO stdio
    lean              skiff-ctr run's calls without grpcio or the generated modules
    content           the content service as skiff.image's content-store duck type

It speaks only the wire API (skiff.api); nothing here imports the
supervisor's server code.
"""

from __future__ import annotations

from skiff.containerd.client._defaults import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_RUNTIME,
    DEFAULT_SNAPSHOTTER,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:
    from typing import Any

    from skiff.containerd.client.core import Client, EventStream, WaitFuture
    from skiff.containerd.client.types import (
        Container,
        ContentInfo,
        Envelope,
        ExitStatus,
        Image,
        IngestStatus,
        Lease,
        LeaseResource,
        Metric,
        Mount,
        Namespace,
        Plugin,
        Process,
        ProcessInfo,
        Runtime,
        SnapshotInfo,
        SnapshotKind,
        TaskStatus,
        Usage,
        Version,
    )

_CORE = ("Client", "EventStream", "WaitFuture")


def __getattr__(name: str) -> Any:
    # core imports grpcio and every generated module (150+ ms), types a score of
    # dataclasses (20 ms): each only on first use, so skiff-ctr run can take the
    # lean client from this package without them
    if name in _CORE:
        from skiff.containerd.client import core

        return getattr(core, name)
    if name in __all__:
        from skiff.containerd.client import types

        return getattr(types, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_ADDRESS",
    "DEFAULT_NAMESPACE",
    "DEFAULT_RUNTIME",
    "DEFAULT_SNAPSHOTTER",
    "Client",
    "Container",
    "ContentInfo",
    "Envelope",
    "EventStream",
    "ExitStatus",
    "Image",
    "IngestStatus",
    "Lease",
    "LeaseResource",
    "Metric",
    "Mount",
    "Namespace",
    "Plugin",
    "Process",
    "ProcessInfo",
    "Runtime",
    "SnapshotInfo",
    "SnapshotKind",
    "TaskStatus",
    "Usage",
    "Version",
    "WaitFuture",
]
