"""skiff-containerd's raw content store: blobs by digest on disk, no
namespaces (the metadata layer adds those). See store.py."""

from skiff.containerd.content.store import ContentStore, Info, Status, Writer

__all__ = ["ContentStore", "Info", "Status", "Writer"]
