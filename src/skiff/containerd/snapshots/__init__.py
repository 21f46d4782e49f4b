"""skiff-containerd's snapshotters: `overlayfs` (default) and `native`,
with containerd's model of active, view and committed snapshots."""

from skiff.containerd.snapshots.base import Info, Kind, Snapshotter, Usage
from skiff.containerd.snapshots.native import NativeSnapshotter
from skiff.containerd.snapshots.overlay import OverlaySnapshotter
from skiff.image.mount import Mount, mount_all, unmount

SNAPSHOTTERS: dict[str, type[Snapshotter]] = {
    "overlayfs": OverlaySnapshotter,
    "native": NativeSnapshotter,
}

__all__ = [
    "SNAPSHOTTERS",
    "Info",
    "Kind",
    "Mount",
    "NativeSnapshotter",
    "OverlaySnapshotter",
    "Snapshotter",
    "Usage",
    "mount_all",
    "unmount",
]
