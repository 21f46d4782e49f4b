"""Apply a tar layer onto a directory and compute a layer from a
directory's changes. Image layer; the supervisor's diff service and the
unpacker call these on snapshot mounts.

Apply streams: the blob is decompressed and unpacked as it is read, and the
DiffID (sha256 of the uncompressed tar) is computed on the way. The tar is
read by a small reader of our own (tarfile's stream mode copies every byte
several times, which made it the slowest stage of a pull): each decoded
chunk is hashed once and file data goes from it straight to `os.write`.
Every entry is placed through `Root`, so no name, symlink or hard link in
the layer can reach outside the directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from skiff.errors import InvalidArgument
from skiff.image.compression import GzipWriter, decoded_chunks
from skiff.image.rootpath import Root, clean, remove_at
from skiff.oci.digest import Digest

if TYPE_CHECKING:
    import tarfile  # imported where layers are written: pulls need only the reader

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


# -- reading tar ----------------------------------------------------------

_BLOCK = 512
_ZERO_BLOCK = bytes(_BLOCK)
_REGULAR = (b"0", b"\0", b"7")  # regular, old regular, contiguous
_HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")  # their size field means nothing
_MAX_META = 16 << 20  # bound on a PAX or GNU long-name record: it is held in memory
_PREALLOCATE_MIN = 1 << 20
_PREALLOCATE_STEP = 8 << 20
_FALLOC_FL_KEEP_SIZE = 1
_SIGNED = struct.Struct("148b8x356b")


@dataclass(slots=True, kw_only=True)
class _Member:
    """One tar entry, with the attribute names of tarfile.TarInfo that
    layer code uses."""

    name: str
    type: bytes
    size: int = 0
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: float = 0
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    pax_headers: dict[str, str] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type in _REGULAR

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"

    def isfifo(self) -> bool:
        return self.type == b"6"


class _Stream:
    """The uncompressed layer, chunk by chunk; every chunk is hashed (the
    DiffID) and counted as it comes in."""

    def __init__(self, chunks: Iterable[bytes | memoryview]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self._pos = 0
        self._hash = hashlib.sha256()
        self.count = 0

    def take(self, n: int) -> memoryview:
        """Up to `n` bytes (empty only at the end), valid until the next call."""
        if self._pos >= len(self._view):
            chunk = next(self._chunks, None)
            if chunk is None:
                return self._view[:0]
            self._view = memoryview(chunk)
            self._pos = 0
            self._hash.update(self._view)  # released GIL: the download goes on meanwhile
            self.count += len(self._view)
        end = min(len(self._view), self._pos + n)
        view = self._view[self._pos : end]
        self._pos = end
        return view

    def read(self, n: int) -> bytes:
        """Exactly `n` bytes, or fewer at the end of the stream."""
        first = self.take(n)
        if len(first) == n or not first:
            return bytes(first)
        out = bytearray(first)
        while len(out) < n and (more := self.take(n - len(out))):
            out += more
        return bytes(out)

    def skip(self, n: int) -> int:
        """Skip up to `n` bytes; returns how many could not be skipped."""
        while n and (view := self.take(n)):
            n -= len(view)
        return n

    def drain(self) -> None:
        while self.take(_CHUNK):
            pass

    def digest(self) -> Digest:
        return Digest("sha256:" + self._hash.hexdigest())


def _nts(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _nti(field: bytes) -> int:
    """A numeric header field: octal text, or GNU base-256 binary."""
    if field[0] in (0o200, 0o377):
        n = int.from_bytes(field[1:], "big")
        return n - (1 << (8 * (len(field) - 1))) if field[0] == 0o377 else n
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"invalid layer tar: bad number {text!r} in a header")


def _checksum_ok(block: bytes) -> bool:
    want = _nti(block[148:156])
    # the checksum field counts as eight spaces; old tars summed signed bytes
    return (
        want == sum(block) - sum(block[148:156]) + 256 or want == sum(_SIGNED.unpack(block)) + 256
    )


def _pax_records(data: bytes) -> dict[str, str]:
    """`%d %s=%s\\n` records (length of the whole record first)."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        space = data.find(b" ", pos)
        digits = data[pos:space] if space > pos else b""
        length = int(digits) if digits.isdigit() else 0
        end = pos + length
        if length < 5 or end > len(data) or data[end - 1] != 0x0A:
            raise InvalidArgument("invalid layer tar: bad pax header")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not key or not eq:
            raise InvalidArgument("invalid layer tar: bad pax header")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos = end
    return out


class _TarReader:
    """Members of a tar stream: ustar, GNU long names, PAX (local and
    global) headers, as Docker, Go's archive/tar and tarfile write them."""

    def __init__(self, stream: _Stream) -> None:
        self._s = stream
        self._left = 0  # data bytes of the current member not yet read
        self._pad = 0
        self._global: dict[str, str] = {}
        self._empty = True

    def next(self) -> _Member | None:
        if self._s.skip(self._left + self._pad) and self._left:
            raise InvalidArgument("invalid layer tar: unexpected end of data")
        self._left = self._pad = 0
        long_name: str | None = None
        long_link: str | None = None
        local: dict[str, str] = {}
        while True:
            block = self._s.read(_BLOCK)
            if len(block) < _BLOCK:
                if not block and not self._empty:
                    return None  # no end-of-archive blocks: tolerated, as tarfile does
                raise InvalidArgument(
                    "invalid layer tar: empty file"
                    if not block
                    else "invalid layer tar: truncated header"
                )
            if block == _ZERO_BLOCK:
                return None
            if not _checksum_ok(block):
                raise InvalidArgument("invalid layer tar: bad checksum")
            self._empty = False
            kind = block[156:157]
            size = _nti(block[124:136])
            if kind in (b"x", b"X", b"g", b"L", b"K"):
                data = self._meta(size)
                if kind == b"g":
                    self._global.update(_pax_records(data))
                elif kind in (b"x", b"X"):
                    local.update(_pax_records(data))
                elif kind == b"L":
                    long_name = _nts(data)
                else:
                    long_link = _nts(data)
                continue
            m = _Member(
                name=_nts(block[0:100]),
                type=kind,
                size=size,
                mode=_nti(block[100:108]),
                uid=_nti(block[108:116]),
                gid=_nti(block[116:124]),
                mtime=_nti(block[136:148]),
                linkname=_nts(block[157:257]),
            )
            if block[257:263] == b"ustar\0" and block[345] != 0:
                m.name = _nts(block[345:500]) + "/" + m.name
            if kind in (b"3", b"4"):
                m.devmajor, m.devminor = _nti(block[329:337]), _nti(block[337:345])
            if long_name is not None:
                m.name = long_name
            if long_link is not None:
                m.linkname = long_link
            headers = {**self._global, **local}
            self._apply_pax(m, headers)
            if kind == b"\0" and m.name.endswith("/"):
                m.type = b"5"
            if m.isdir():
                m.name = m.name.rstrip("/")
            if m.type == b"S" or any(k.startswith("GNU.sparse.") for k in headers):
                raise InvalidArgument(f"layer entry {m.name!r}: sparse files are not supported")
            self._left = 0 if m.type in _HEADER_ONLY else m.size
            self._pad = -self._left % _BLOCK
            return m

    def _meta(self, size: int) -> bytes:
        if not 0 <= size <= _MAX_META:
            raise InvalidArgument(f"invalid layer tar: {size}-byte extended header")
        data = self._s.read(size)
        if len(data) < size or self._s.skip(-size % _BLOCK):
            raise InvalidArgument("invalid layer tar: unexpected end of data")
        return data

    @staticmethod
    def _apply_pax(m: _Member, headers: dict[str, str]) -> None:
        m.pax_headers = headers
        try:
            for key, value in headers.items():
                if key == "path":
                    m.name = value
                elif key == "linkpath":
                    m.linkname = value
                elif key == "size":
                    m.size = int(value)
                elif key == "uid":
                    m.uid = int(value)
                elif key == "gid":
                    m.gid = int(value)
                elif key == "mtime":
                    m.mtime = float(value)
        except ValueError:
            raise InvalidArgument(f"layer entry {m.name!r}: bad pax header {key}={value!r}")

    def copy_data(self, fd: int, m: _Member) -> None:
        """Write the current member's data to `fd`. A large file's blocks
        are reserved a step ahead of the writes, never further: the size in
        a header is only a claim until the bytes arrive."""
        written = reserved = 0
        prealloc = self._left >= _PREALLOCATE_MIN
        while self._left:
            if prealloc and written >= reserved:
                step = min(self._left, _PREALLOCATE_STEP)
                _preallocate(fd, written, step)
                reserved = written + step
            view = self._s.take(self._left)
            if not view:
                raise InvalidArgument(f"layer entry {m.name!r}: truncated")
            self._left -= len(view)
            written += len(view)
            while view:
                view = view[os.write(fd, view) :]


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

    def entry(self, tar: _TarReader, member: _Member) -> None:
        try:
            self._entry(tar, member)
        finally:
            self._close_stale()

    def _entry(self, tar: _TarReader, member: _Member) -> None:
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

    def _dir(self, pfd: int, parts: list[str], m: _Member) -> None:
        name = parts[-1]
        if not self._replace(pfd, name, keep_dir=True):
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=pfd)
        try:
            self._meta_fd(fd, m)
        finally:
            os.close(fd)
        self._dir_times.append((parts, m.mtime))

    def _file(self, tar: _TarReader, pfd: int, name: str, m: _Member) -> None:
        fd = os.open(
            name,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=pfd,
        )
        try:
            tar.copy_data(fd, m)
            self._meta_fd(fd, m)
            os.utime(fd, ns=_ns(m))
        finally:
            os.close(fd)

    def _meta_fd(self, fd: int, m: _Member) -> None:
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

    def _owner(self, pfd: int, name: str, m: _Member) -> None:
        if self.chown:
            os.chown(name, m.uid, m.gid, dir_fd=pfd, follow_symlinks=False)

    def _hardlink(self, pfd: int, parts: list[str], m: _Member) -> None:
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

    def _special(self, pfd: int, parts: list[str], m: _Member) -> None:
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


_fallocate: Any = None


def _preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve blocks a file is about to fill, keeping its size: ext4 then
    skips its per-page delayed allocation. Failures are ignored (the writes
    that follow are what count)."""
    global _fallocate
    if _fallocate is None:
        import ctypes

        try:
            _fallocate = ctypes.CDLL(None, use_errno=True).fallocate
            _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _fallocate = False
    if _fallocate:
        _fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)


def _ns(m: _Member) -> tuple[int, int]:
    t = int(m.mtime * 1_000_000_000)
    return (t, t)


def apply_layer(
    target: str,
    blob: BinaryIO,
    *,
    chown: bool | None = None,
    use_openat2: bool | None = None,
    check_crc: bool = True,
) -> ApplyResult:
    """Unpack a layer blob (gzip, zstd or plain tar) onto `target`.

    Raises InvalidArgument for an entry that would leave the directory;
    entries before it may already have been written (the caller discards
    the snapshot, as containerd does). `check_crc=False` skips gzip's
    CRC-32 where the caller has the blob's digest verified (content store)
    and compares the DiffID returned here.
    """
    stream = _Stream(decoded_chunks(blob, check_crc=check_crc))
    tar = _TarReader(stream)
    with Root(target, use_openat2=use_openat2) as root:
        applier = _Applier(root, os.geteuid() == 0 if chown is None else chown)
        try:
            while (member := tar.next()) is not None:
                applier.entry(tar, member)
            applier.finish()
        finally:
            applier.close()
    stream.drain()
    return ApplyResult(stream.digest(), stream.count)


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
    import tarfile

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
    import tarfile

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
