"""`docker cp` and `docker export`: tar streams out of and into a container's root.

Every path is resolved inside the container's root (Root: openat2
RESOLVE_IN_ROOT, else component by component); symlinks in the container
are hostile. A running container is seen through /proc/<pid>/root (its
volumes included), a stopped one through its snapshot mounted by skiffd.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import tarfile
from typing import IO, Any, BinaryIO

from skiff.engine.containers.logs import rfc3339
from skiff.errors import InvalidArgument, NotFound
from skiff.image.layer import apply_layer
from skiff.image.rootpath import Root


def clean(path: str) -> list[str]:
    """A container path as components; `..` at the top stays at the root, as in the container."""
    parts: list[str] = []
    for comp in path.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if parts:
                parts.pop()
            continue
        if "\0" in comp:
            raise InvalidArgument(f"path {path!r} contains a NUL byte")
        parts.append(comp)
    return parts


# Go's os.FileMode type bits, which the docker CLI decodes from the stat header
_GO_DIR = 1 << 31
_GO_SYMLINK = 1 << 27
_GO_DEVICE = 1 << 26
_GO_PIPE = 1 << 25
_GO_SOCKET = 1 << 24
_GO_SETUID = 1 << 23
_GO_SETGID = 1 << 22
_GO_CHARDEV = 1 << 21
_GO_STICKY = 1 << 20


def go_mode(st: os.stat_result) -> int:
    mode = stat.S_IMODE(st.st_mode) & 0o777
    m = st.st_mode
    if stat.S_ISDIR(m):
        mode |= _GO_DIR
    elif stat.S_ISLNK(m):
        mode |= _GO_SYMLINK
    elif stat.S_ISCHR(m):
        mode |= _GO_DEVICE | _GO_CHARDEV
    elif stat.S_ISBLK(m):
        mode |= _GO_DEVICE
    elif stat.S_ISFIFO(m):
        mode |= _GO_PIPE
    elif stat.S_ISSOCK(m):
        mode |= _GO_SOCKET
    if m & stat.S_ISUID:
        mode |= _GO_SETUID
    if m & stat.S_ISGID:
        mode |= _GO_SETGID
    if m & stat.S_ISVTX:
        mode |= _GO_STICKY
    return mode


class Located:
    """A path inside the root: the open parent directory and the entry's name."""

    def __init__(self, root: Root, path: str, follow_last: bool):
        self.root = root
        parts = clean(path)
        self.name = parts[-1] if parts else "/"
        if not parts:
            self.parent_fd = -1
            self.fd = os.dup(root.fd)
            self.st = os.fstat(self.fd)
            self.link = ""
            return
        try:
            self.parent_fd = root.open_dir(parts[:-1])
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container")
        try:
            self.st = os.stat(parts[-1], dir_fd=self.parent_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.close(self.parent_fd)
            raise NotFound(f"Could not find the file {path} in container")
        self.link = ""
        if stat.S_ISLNK(self.st.st_mode):
            self.link = os.readlink(parts[-1], dir_fd=self.parent_fd)
            if follow_last or path.endswith("/"):
                try:
                    fd = root.open_dir(parts)
                    self.st = os.fstat(fd)
                    os.close(fd)
                except (FileNotFoundError, NotADirectoryError):
                    pass
        self.fd = -1
        if stat.S_ISDIR(self.st.st_mode):
            try:
                self.fd = root.open_dir(parts)
            except (FileNotFoundError, NotADirectoryError):
                self.fd = -1

    def close(self) -> None:
        for fd in (self.parent_fd, self.fd):
            if fd >= 0:
                os.close(fd)

    def stat_header(self) -> str:
        info = {
            "name": self.name,
            "size": self.st.st_size,
            "mode": go_mode(self.st),
            "mtime": rfc3339(self.st.st_mtime),
            "linkTarget": self.link,
        }
        return base64.b64encode(json.dumps(info).encode()).decode()


def stat_path(root_dir: str, path: str) -> str:
    with Root(root_dir) as root:
        loc = Located(root, path, follow_last=False)
        try:
            return loc.stat_header()
        finally:
            loc.close()


def write_tar(root_dir: str, path: str, out: IO[bytes]) -> str:
    """A tar of `path` (a file or a directory tree) named by its last component."""
    with Root(root_dir) as root:
        loc = Located(root, path, follow_last=path.endswith("/") or path.endswith("/."))
        try:
            header = loc.stat_header()
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if loc.fd >= 0:
                    arcname = loc.name if loc.name != "/" else "."
                    _add_dir(tar, loc.fd, arcname, loc.st)
                else:
                    _add_entry(tar, loc.parent_fd, loc.name, loc.name)
            return header
        finally:
            loc.close()


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    return info


def _add_entry(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    """One entry found by name in an open directory, never following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    m = st.st_mode
    if stat.S_ISDIR(m):
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
        try:
            _add_dir(tar, fd, arcname, st)
        finally:
            os.close(fd)
        return
    info = _info(arcname, st)
    if stat.S_ISREG(m):
        info.type = tarfile.REGTYPE
        info.size = st.st_size
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as f:
            tar.addfile(info, f)
        return
    if stat.S_ISLNK(m):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dir_fd)
    elif stat.S_ISCHR(m) or stat.S_ISBLK(m):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(m) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(m):
        info.type = tarfile.FIFOTYPE
    else:
        return  # sockets do not go into tars
    tar.addfile(info)


def _add_dir(tar: tarfile.TarFile, fd: int, arcname: str, st: os.stat_result) -> None:
    info = _info(arcname, st)
    info.type = tarfile.DIRTYPE
    tar.addfile(info)
    for name in sorted(os.listdir(fd)):
        _add_entry(tar, fd, name, f"{arcname}/{name}" if arcname != "." else name)


def extract_tar(root_dir: str, path: str, src: BinaryIO) -> None:
    with Root(root_dir) as root:
        try:
            fd = root.open_dir(clean(path))
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container")
        except NotADirectoryError:
            raise InvalidArgument(f"extraction point is not a directory: {path}")
        try:
            apply_layer(f"/proc/self/fd/{fd}", src)
        finally:
            os.close(fd)


def export_tar(root_dir: str, out: IO[bytes]) -> None:
    fd = os.open(root_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(os.listdir(fd)):
                _add_entry(tar, fd, name, name)
    finally:
        os.close(fd)


_ = Any
