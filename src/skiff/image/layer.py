"""Apply a tar layer onto a directory and compute a layer from a
directory's changes. Image layer; the supervisor's diff service and the
unpacker call these on snapshot mounts.

Apply streams: the blob is decompressed and unpacked as it is read, and the
DiffID (sha256 of the uncompressed tar) is computed on the way. Every
entry is placed through `Root`, so no name, symlink or hard link in the
layer can reach outside the directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from skiff.errors import InvalidArgument
from skiff.image.compression import GzipWriter, decompressed
from skiff.image.rootpath import Root, clean, remove_at
from skiff.oci.digest import Digest

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
_XATTR_PREFIX = "SCHILY.xattr."
_CHUNK = 1 << 20
# xattrs that describe the overlay filesystem itself, never image content
_SKIP_XATTRS = ("trusted.overlay.", "user.overlay.", "security.selinux")


@dataclass(frozen=True, slots=True)
class ApplyResult:
    diff_id: Digest
    size: int  # uncompressed bytes


class _HashingReader:
    """Reads through to `src`, hashing and counting what passes."""

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._h = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n)
        self._h.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(_CHUNK):
            pass

    def digest(self) -> Digest:
        return Digest("sha256:" + self._h.hexdigest())


class _Applier:
    def __init__(self, root: Root, chown: bool) -> None:
        self.root = root
        self.chown = chown
        self._parents: dict[tuple[str, ...], int] = {}
        self._dir_times: list[tuple[list[str], float]] = []
        self._written: set[tuple[str, ...]] = set()
        self._opaque: list[list[str]] = []
        self._stale: list[int] = []

    def close(self) -> None:
        self._forget_parents()
        self._close_stale()

    def _forget_parents(self) -> None:
        # closed only after the current entry, which may still hold one
        self._stale.extend(self._parents.values())
        self._parents.clear()

    def _close_stale(self) -> None:
        for fd in self._stale:
            os.close(fd)
        self._stale.clear()

    def _parent(self, parts: list[str]) -> int:
        key = tuple(parts[:-1])
        fd = self._parents.get(key)
        if fd is None:
            try:
                fd = self.root.open_dir(parts[:-1], create=True)
            except (FileNotFoundError, NotADirectoryError) as e:
                raise InvalidArgument(
                    f"layer entry {'/'.join(parts)!r}: parent is not a directory inside the root ({e.strerror})"
                )
            self._parents[key] = fd
        return fd

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        try:
            self._entry(tar, member)
        finally:
            self._close_stale()

    def _entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        parts = clean(member.name, what="layer entry")
        if not parts:
            return  # the root itself: its metadata belongs to the snapshot
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(parts)
            return
        self._written.add(tuple(parts))
        pfd = self._parent(parts)
        if member.isdir():
            self._dir(pfd, parts, member)
        elif member.isreg():
            self._replace(pfd, base, keep_dir=False)
            self._file(tar, pfd, base, member)
        elif member.issym():
            self._replace(pfd, base, keep_dir=False)
            os.symlink(member.linkname, base, dir_fd=pfd)
            self._owner(pfd, base, member)
            os.utime(base, ns=_ns(member), dir_fd=pfd, follow_symlinks=False)
            self._forget_parents()  # a path through this name now leads elsewhere
        elif member.islnk():
            self._hardlink(pfd, parts, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._special(pfd, parts, member)
        else:
            raise InvalidArgument(f"layer entry {member.name!r}: unsupported type {member.type!r}")

    def _replace(self, pfd: int, name: str, *, keep_dir: bool) -> bool:
        """Clear the way for a new entry; True if a directory was kept."""
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if keep_dir and stat.S_ISDIR(st.st_mode):
            return True
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            self._forget_parents()  # paths through this name will lead elsewhere
        remove_at(pfd, name)
        return False

    def _dir(self, pfd: int, parts: list[str], m: tarfile.TarInfo) -> None:
        name = parts[-1]
        if not self._replace(pfd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._meta_fd(fd, m)
        finally:
            os.close(fd)
        self._dir_times.append((parts, m.mtime))

    def _file(self, tar: tarfile.TarFile, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            src = tar.extractfile(m)
            if src is not None:
                remaining = m.size
                while remaining > 0:
                    chunk = src.read(min(_CHUNK, remaining))
                    if not chunk:
                        raise InvalidArgument(f"layer entry {m.name!r}: truncated")
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view) :]
                    remaining -= len(chunk)
            self._meta_fd(fd, m)
            os.utime(fd, ns=_ns(m))
        finally:
            os.close(fd)

    def _meta_fd(self, fd: int, m: tarfile.TarInfo) -> None:
        if self.chown:
            os.fchown(fd, m.uid, m.gid)
        # after chown, which clears setuid and setgid bits
        os.fchmod(fd, m.mode & 0o7777)
        for key, value in m.pax_headers.items():
            if key.startswith(_XATTR_PREFIX):
                attr = key[len(_XATTR_PREFIX) :]
                if attr.startswith(_SKIP_XATTRS):
                    continue
                try:
                    os.setxattr(fd, attr, value.encode("utf-8", "surrogateescape"))
                except OSError as e:
                    if e.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise

    def _owner(self, pfd: int, name: str, m: tarfile.TarInfo) -> None:
        if self.chown:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, parts: list[str], m: tarfile.TarInfo) -> None:
        target = clean(m.linkname, what=f"hard link target of {m.name!r}")
        if not target:
            raise InvalidArgument(f"layer entry {m.name!r}: hard link to the root")
        try:
            tfd = self.root.open_dir(target[:-1])
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidArgument(
                f"layer entry {m.name!r}: hard link target {m.linkname!r} not inside the root"
            )
        try:
            try:
                tst = os.stat(target[-1], dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                raise InvalidArgument(
                    f"layer entry {m.name!r}: hard link target {m.linkname!r} not found"
                )
            if stat.S_ISDIR(tst.st_mode):
                raise InvalidArgument(f"layer entry {m.name!r}: hard link to a directory")
            try:
                st = os.stat(parts[-1], dir_fd=pfd, follow_symlinks=False)
                if (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
                    return
            except FileNotFoundError:
                pass
            self._replace(pfd, parts[-1], keep_dir=False)
            os.link(target[-1], parts[-1], src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        finally:
            os.close(tfd)

    def _special(self, pfd: int, parts: list[str], m: tarfile.TarInfo) -> None:
        name = parts[-1]
        self._replace(pfd, name, keep_dir=False)
        if m.isfifo():
            os.mkfifo(name, m.mode & 0o7777, dir_fd=pfd)
        else:
            kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK
            try:
                os.mknod(
                    name, kind | (m.mode & 0o7777), os.makedev(m.devmajor, m.devminor), dir_fd=pfd
                )
            except PermissionError:
                raise InvalidArgument(f"layer entry {m.name!r}: cannot create a device node here")
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            proc = f"/proc/self/fd/{fd}"
            if self.chown:
                os.chown(proc, m.uid, m.gid)
            os.chmod(proc, m.mode & 0o7777)
            os.utime(proc, ns=_ns(m))
        finally:
            os.close(fd)

    def _whiteout(self, parts: list[str]) -> None:
        base = parts[-1]
        if base == WHITEOUT_OPAQUE:
            self._opaque.append(parts[:-1])
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other AUFS bookkeeping (.wh..wh.plnk etc.) has no meaning here
        victim = base[len(WHITEOUT_PREFIX) :]
        if victim in ("", ".", "..") or "/" in victim:
            raise InvalidArgument(f"layer entry {'/'.join(parts)!r}: invalid whiteout")
        try:
            pfd = self.root.open_dir(parts[:-1])
        except (FileNotFoundError, NotADirectoryError):
            return  # nothing there to hide
        try:
            remove_at(pfd, victim)
        finally:
            os.close(pfd)
        self._forget_parents()

    def finish(self) -> None:
        # an opaque directory hides everything below it from lower layers,
        # which is whatever this layer did not write itself
        for dparts in self._opaque:
            try:
                fd = self.root.open_dir(dparts)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                for child in os.listdir(fd):
                    if (*dparts, child) not in self._written:
                        remove_at(fd, child)
            finally:
                os.close(fd)
        self._forget_parents()
        # directory times last: creating entries inside them changed them
        for parts, mtime in reversed(self._dir_times):
            try:
                fd = self.root.open_dir(parts)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                os.utime(fd, (mtime, mtime))
            finally:
                os.close(fd)


def _ns(m: tarfile.TarInfo) -> tuple[int, int]:
    t = int(m.mtime * 1_000_000_000)
    return (t, t)


def apply_layer(
    target: str,
    blob: BinaryIO,
    *,
    chown: bool | None = None,
    use_openat2: bool | None = None,
) -> ApplyResult:
    """Unpack a layer blob (gzip, zstd or plain tar) onto `target`.

    Raises InvalidArgument for an entry that would leave the directory;
    entries before it may already have been written (the caller discards
    the snapshot, as containerd does).
    """
    reader = _HashingReader(decompressed(blob))
    with Root(target, use_openat2=use_openat2) as root:
        applier = _Applier(root, os.geteuid() == 0 if chown is None else chown)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
                for member in tar:
                    applier.entry(tar, member)
            applier.finish()
        except tarfile.TarError as e:
            raise InvalidArgument(f"invalid layer tar: {e}")
        finally:
            applier.close()
    reader.drain()
    return ApplyResult(reader.digest(), reader.count)


# -- diff ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiffResult:
    diff_id: Digest  # of the uncompressed tar
    digest: Digest  # of the bytes written (compressed or not)
    size: int  # of the bytes written


class _HashingWriter:
    def __init__(self, dst: Any) -> None:
        self._dst = dst
        self._h = hashlib.sha256()
        self.count = 0

    def write(self, data: bytes) -> int:
        self._h.update(data)
        self.count += len(data)
        self._dst.write(data)
        return len(data)

    def digest(self) -> Digest:
        return Digest("sha256:" + self._h.hexdigest())


def _xattrs(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith(_SKIP_XATTRS):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[_XATTR_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return out


def _tarinfo(rel: str, path: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(rel)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    ti.mtime = int(st.st_mtime)
    ti.uname = ti.gname = ""
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
    elif stat.S_ISREG(st.st_mode):
        ti.type, ti.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISLNK(st.st_mode):
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        ti.type = tarfile.FIFOTYPE
    else:
        raise InvalidArgument(f"{rel}: cannot put a socket in a layer")
    ti.pax_headers = _xattrs(path)
    return ti


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _is_opaque(path: str) -> bool:
    for attr in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, attr, follow_symlinks=False) == b"y":
                return True
        except OSError:
            pass
    return False


Change = tuple[str, str, os.stat_result | None]  # (rel, host path, stat); None = whiteout


def overlay_changes(upper: str) -> Iterator[Change]:
    """The changes an overlay upper directory holds, in tar order."""

    def walk(rel: str, path: str) -> Iterator[Change]:
        for name in sorted(os.listdir(path)):
            child = os.path.join(path, name)
            crel = f"{rel}{name}"
            st = os.lstat(child)
            if _is_overlay_whiteout(st):
                yield (f"{rel}{WHITEOUT_PREFIX}{name}", child, None)
                continue
            yield (crel, child, st)
            if stat.S_ISDIR(st.st_mode):
                if _is_opaque(child):
                    yield (f"{crel}/{WHITEOUT_OPAQUE}", child, None)
                yield from walk(crel + "/", child)

    yield from walk("", upper)


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        return True  # a directory's own mtime changes with its entries
    return (a.st_size, a.st_mtime_ns, a.st_rdev) == (b.st_size, b.st_mtime_ns, b.st_rdev)


def tree_changes(lower: str | None, upper: str) -> Iterator[Change]:
    """Changes from `lower` to `upper` by walking both trees (what the
    native snapshotter, which copies, needs)."""

    def walk(rel: str, lo: str | None, up: str) -> Iterator[Change]:
        up_names = set(os.listdir(up))
        lo_names = set(os.listdir(lo)) if lo is not None else set()
        for name in sorted(up_names | lo_names):
            upath = os.path.join(up, name)
            crel = f"{rel}{name}"
            if name not in up_names:
                yield (f"{rel}{WHITEOUT_PREFIX}{name}", upath, None)
                continue
            ust = os.lstat(upath)
            lpath = os.path.join(lo, name) if lo is not None and name in lo_names else None
            lst = os.lstat(lpath) if lpath else None
            changed = lst is None or not _same(lst, ust)
            if not changed and stat.S_ISLNK(ust.st_mode) and lpath:
                changed = os.readlink(lpath) != os.readlink(upath)
            if not changed and lpath and _xattrs(lpath) != _xattrs(upath):
                changed = True
            if changed:
                yield (crel, upath, ust)
            if stat.S_ISDIR(ust.st_mode):
                sub_lo = lpath if lst is not None and stat.S_ISDIR(lst.st_mode) else None
                if lst is not None and sub_lo is None:
                    sub_lo = None  # replaced a non-directory: all new
                yield from walk(crel + "/", sub_lo, upath)

    yield from walk("", lower, upper)


def write_layer(
    changes: Iterator[Change],
    out: Any,
    *,
    compress: bool = True,
    progress: Callable[[int], None] | None = None,
) -> DiffResult:
    """Write `changes` as a tar layer (gzip unless told not) to `out`."""
    outer = _HashingWriter(out)
    sink: Any = GzipWriter(outer) if compress else outer
    inner = _HashingWriter(sink)
    links: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=inner, mode="w|", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
        for rel, path, st in changes:
            if st is None:
                ti = tarfile.TarInfo(rel)
                ti.mode, ti.mtime = 0o644, 0
                tar.addfile(ti)
                continue
            ti = _tarinfo(rel, path, st)
            if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in links:
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
                    tar.addfile(ti)
                    continue
                links[key] = rel
            if ti.type == tarfile.REGTYPE:
                with open(path, "rb") as f:
                    tar.addfile(ti, f)
            else:
                tar.addfile(ti)
            if progress is not None:
                progress(inner.count)
    if compress:
        sink.close()
    return DiffResult(inner.digest(), outer.digest(), outer.count)
