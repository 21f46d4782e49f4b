"""A container's root filesystem seen from skiffd: its overlay layers.

For the operations that work on a container that may not be running (the
user lookup, filling a new volume from the image, `docker cp`, export,
changes), skiffd reads the snapshot's directories or mounts the overlay
itself; for a running container `/proc/<pid>/root` is the live view.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

from skiff.engine.containers.supervisor_api import MountSpec
from skiff.image.mount import Mount, mount, unmount
from skiff.image.rootpath import Root


def clean_path(path: str) -> list[str]:
    from skiff.engine.containers.archive import clean

    return clean(path)


def _options(mounts: Sequence[MountSpec]) -> tuple[str, list[str]]:
    """(upperdir or bind source, lowerdirs top first)."""
    upper, lowers = "", []
    for m in mounts:
        if m.type == "bind":
            upper = m.source
        for opt in m.options:
            key, _, value = opt.partition("=")
            if key == "upperdir":
                upper = value
            elif key == "lowerdir":
                lowers = value.split(":")
    return upper, lowers


def upper_dir(mounts: Sequence[MountSpec]) -> str:
    return _options(mounts)[0]


def upper_size(path: str) -> int:
    total = 0
    if not path:
        return 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def read_layered(mounts: Sequence[MountSpec], rel: str, limit: int = 1 << 20) -> bytes | None:
    """The content of a regular file as the merged view shows it (symlinks not followed)."""
    upper, lowers = _options(mounts)
    for layer in [upper, *lowers]:
        if not layer:
            continue
        try:
            with Root(layer) as root:
                parts = clean_path(rel)
                fd, name = root.parent(parts, create=False)
                try:
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                        return None  # a whiteout
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        return os.read(f, limit)
                    finally:
                        os.close(f)
                finally:
                    os.close(fd)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            continue
    return None


@contextlib.contextmanager
def mounted(mounts: Sequence[MountSpec], scratch: str, writable: bool = False) -> Iterator[str]:
    """The snapshot mounted at a private temporary directory (read-only unless writable)."""
    os.makedirs(scratch, 0o700, exist_ok=True)
    target = tempfile.mkdtemp(prefix="rootfs-", dir=scratch)
    upper, lowers = _options(mounts)
    try:
        if writable:
            for m in mounts:
                mount(Mount(type=m.type, source=m.source, options=list(m.options)), target)
        elif lowers:
            layers = [upper, *lowers] if upper else lowers
            if len(layers) == 1:
                mount(Mount(type="bind", source=layers[0], options=["rbind", "ro"]), target)
            else:
                mount(
                    Mount(
                        type="overlay",
                        source="overlay",
                        options=["ro", "lowerdir=" + ":".join(layers)],
                    ),
                    target,
                )
        else:
            mount(Mount(type="bind", source=upper, options=["rbind", "ro"]), target)
        try:
            yield target
        finally:
            unmount(target, detach=True)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(target)


def copy_up(mounts: Sequence[MountSpec], scratch: str, todo: list[tuple[str, str]]) -> None:
    """Fill each (path in the image, volume directory) from the image."""
    with mounted(mounts, scratch) as root, Root(root) as r:
        for dest, volume_dir in todo:
            try:
                fd = r.open_dir(clean_path(dest), create=False)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                src = f"/proc/self/fd/{fd}"
                st = os.fstat(fd)
                os.chmod(volume_dir, stat.S_IMODE(st.st_mode))
                os.chown(volume_dir, st.st_uid, st.st_gid)
                real = os.readlink(src)
                for name in os.listdir(real):
                    s = os.path.join(real, name)
                    d = os.path.join(volume_dir, name)
                    if os.path.isdir(s) and not os.path.islink(s):
                        shutil.copytree(s, d, symlinks=True, dirs_exist_ok=True)
                    else:
                        shutil.copy2(s, d, follow_symlinks=False)
            finally:
                os.close(fd)


def changes(upper: str) -> list[dict[str, Any]]:
    """`docker diff`: kind 0 modified, 1 added, 2 deleted, from the upper directory."""
    out: list[dict[str, Any]] = []
    if not upper or not os.path.isdir(upper):
        return out
    for dirpath, dirs, files in os.walk(upper):
        rel_dir = "/" + os.path.relpath(dirpath, upper).lstrip(".")
        rel_dir = rel_dir.rstrip("/") or ""
        for name in sorted(dirs + files):
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            rel = f"{rel_dir}/{name}"
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append({"Path": rel, "Kind": 2})
            elif name in dirs and _opaque(path):
                out.append({"Path": rel, "Kind": 0})
            else:
                out.append({"Path": rel, "Kind": 1 if not _in_lower_hint(path) else 0})
    return out


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _in_lower_hint(path: str) -> bool:
    # a directory in the upper layer that existed below is a copy-up: overlay marks
    # nothing on it, so report directories as modified (Docker does the same for parents)
    return os.path.isdir(path) and not os.path.islink(path)
