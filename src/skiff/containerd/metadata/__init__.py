"""skiff-containerd's metadata layer: namespaces, images, containers, content
and snapshot references, labels and leases in one SQLite file, plus the
garbage collector that frees blobs and snapshots nothing refers to."""

from skiff.containerd.metadata.db import (
    AnyValue,
    Container,
    ContentRef,
    Image,
    Lease,
    Metadata,
    Namespace,
    Resource,
    Target,
)

__all__ = [
    "AnyValue",
    "Container",
    "ContentRef",
    "Image",
    "Lease",
    "Metadata",
    "Namespace",
    "Resource",
    "Target",
]
