"""skiff.containerd.client: the typed client of the containerd gRPC API, what
skiffd and skiff-ctr use to drive skiff-containerd (or Debian's containerd).

    Client            one method per API call, dataclasses in and out
    images            pull / push / import / export / unpack, done client-side
    containers        ctr-style spec generation, containers, tasks and FIFO stdio
    content           the content service as skiff.image's content-store duck type

It speaks only the wire API (skiff.api); nothing here imports the
supervisor's server code.
"""

from skiff.containerd.client.core import (
    DEFAULT_ADDRESS,
    DEFAULT_NAMESPACE,
    DEFAULT_RUNTIME,
    DEFAULT_SNAPSHOTTER,
    Client,
    EventStream,
    WaitFuture,
)
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
