"""Network namespaces for skiffd's network layer: enter one for a moment, make one.

A network namespace belongs to a thread, not a process, so the layer enters a
container's namespace from a short-lived thread of its own: whatever that
thread opens there (a netlink socket, the embedded DNS server's sockets) stays
in the container's namespace after the thread is gone, and the rest of the
daemon never leaves its own namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

from skiff.runtime import linux

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 2

T = TypeVar("T")


def netns_inode(path: str) -> int:
    return os.stat(path).st_ino


def current_netns_inode() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """Call fn in a fresh thread that has joined the network namespace at path."""
    box: dict[str, object] = {}
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def body() -> None:
        try:
            linux.setns(fd, CLONE_NEWNET)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    try:
        thread = threading.Thread(target=body, name="skiff-netns", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def create_netns(path: str) -> int:
    """Make a new network namespace, kept alive by a bind mount on path; its inode."""
    open(path, "a").close()

    def body() -> int:
        linux.unshare(CLONE_NEWNET)
        linux.mount("/proc/thread-self/ns/net", path, "none", MS_BIND, None)
        return current_netns_inode()

    # the unshare happens in a thread of its own, which ends with the call
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = body()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, name="skiff-netns-new", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        try:
            os.unlink(path)
        except OSError:
            pass
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def remove_netns(path: str) -> None:
    try:
        linux.umount2(path, MNT_DETACH)
    except OSError:
        pass
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
