"""Resolve paths inside a root directory the way a chroot would, so that a
hostile image's symlinks can never lead outside it.

Part of the image layer: layer apply, diff and `docker cp` use this. Uses
openat2(RESOLVE_IN_ROOT) where the kernel has it (5.6+), else walks the path
component by component with O_NOFOLLOW, resolving each symlink itself with
`/` meaning the root and `..` stopping at the root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct

from skiff.errors import InvalidArgument

_SYS_OPENAT2 = 437  # same number on every architecture (unified syscall table)
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10
_MAX_SYMLINKS = 40

_libc: ctypes.CDLL | None = None
_has_openat2: bool | None = None


def _syscall() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def openat2(dirfd: int, path: str, flags: int, resolve: int, mode: int = 0) -> int:
    """openat2(2); raises OSError, with ENOSYS where the kernel lacks it."""
    how = struct.pack("QQQ", flags, mode, resolve)
    libc = _syscall()
    libc.syscall.restype = ctypes.c_long
    fd = libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.c_char_p(how),
        ctypes.c_size_t(len(how)),
    )
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"openat2 {path}: {os.strerror(err)}")
    return int(fd)


def openat2_available() -> bool:
    global _has_openat2
    if _has_openat2 is None:
        try:
            fd = openat2(-100, "/", os.O_PATH | os.O_CLOEXEC, 0)  # AT_FDCWD
            os.close(fd)
            _has_openat2 = True
        except OSError as e:
            _has_openat2 = e.errno not in (errno.ENOSYS, errno.EPERM)
    return _has_openat2


def clean(name: str, *, what: str = "path") -> list[str]:
    """Split a tar name into components, refusing absolute names and any
    `..` that would climb above the root."""
    if name.startswith("/"):
        raise InvalidArgument(f"{what} {name!r} is absolute")
    parts: list[str] = []
    for comp in name.split("/"):
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                raise InvalidArgument(f"{what} {name!r} escapes the root")
            parts.pop()
            continue
        if "\0" in comp:
            raise InvalidArgument(f"{what} {name!r} contains a NUL byte")
        parts.append(comp)
    return parts


class Root:
    """An open root directory; every lookup stays inside it."""

    def __init__(self, path: str, *, use_openat2: bool | None = None) -> None:
        self.path = os.path.abspath(path)
        self.fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.use_openat2 = openat2_available() if use_openat2 is None else use_openat2

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups -----------------------------------------------------------

    def open_dir(self, parts: list[str], *, create: bool = False, mode: int = 0o755) -> int:
        """An O_DIRECTORY fd for `parts` resolved in the root, following
        symlinks as the container would see them. With `create`, missing
        directories are made (tar layers may omit parent entries)."""
        if not parts:
            return os.dup(self.fd)
        try:
            return self._open_dir(parts)
        except FileNotFoundError:
            if not create:
                raise
        # make the missing components one by one, each under a resolved parent
        for i in range(len(parts)):
            try:
                fd = self._open_dir(parts[: i + 1])
                os.close(fd)
                continue
            except FileNotFoundError:
                pass
            parent = self._open_dir(parts[:i]) if i else os.dup(self.fd)
            try:
                os.mkdir(parts[i], mode, dir_fd=parent)
            except FileExistsError:
                pass  # a dangling symlink: the next lookup reports it
            finally:
                os.close(parent)
        return self._open_dir(parts)

    def _open_dir(self, parts: list[str]) -> int:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
        if self.use_openat2:
            try:
                return openat2(
                    self.fd, "/".join(parts), flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS
                )
            except OSError as e:
                if e.errno == errno.ENOENT:
                    raise FileNotFoundError(e.errno, f"{'/'.join(parts)}: no such directory")
                if e.errno in (errno.ENOTDIR, errno.ELOOP):
                    raise NotADirectoryError(e.errno, f"{'/'.join(parts)}: not a directory")
                raise
        return self._walk(parts)

    def _walk(self, parts: list[str]) -> int:
        """Component-by-component resolution with O_NOFOLLOW (no openat2)."""
        stack = [os.dup(self.fd)]
        todo = list(parts)
        links = 0
        try:
            while todo:
                comp = todo.pop(0)
                if comp in ("", "."):
                    continue
                if comp == "..":
                    if len(stack) > 1:
                        os.close(stack.pop())
                    continue
                try:
                    fd = os.open(
                        comp,
                        os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                        dir_fd=stack[-1],
                    )
                    stack.append(fd)
                    continue
                except OSError as e:
                    if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                st = os.stat(comp, dir_fd=stack[-1], follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, f"{'/'.join(parts)}: not a directory")
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, f"{'/'.join(parts)}: too many symlinks")
                target = os.readlink(comp, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                todo[:0] = target.split("/")
            result = stack.pop()
            return result
        finally:
            for fd in stack:
                os.close(fd)

    def parent(self, parts: list[str], *, create: bool = True) -> tuple[int, str]:
        """(fd of the parent directory, last component) for an entry."""
        if not parts:
            raise InvalidArgument("the root itself has no parent")
        return self.open_dir(parts[:-1], create=create), parts[-1]


def remove_at(dir_fd: int, name: str) -> None:
    """Remove `name` under `dir_fd` and everything below it, never
    following a symlink."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
        try:
            for child in os.listdir(fd):
                remove_at(fd, child)
        finally:
            os.close(fd)
        os.rmdir(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)
