"""The content store of skiff-containerd: immutable blobs addressed by
digest under a root directory, written through resumable ingests.

Sits under the supervisor's metadata layer (namespaces, labels, leases) and
its gRPC content service; the image code uses it through duck typing::

    root/blobs/<algorithm>/<hex>         committed, read-only blobs
    root/ingest/<sha256(ref)>/ref        the ingest's reference
                              data       bytes written so far (resume point)
                              total, expected, startedat
                              lock       flock held by the one open writer

A commit verifies size and digest, fsyncs, and renames the data into
blobs/: a reader never sees a partial blob, and a mismatch commits nothing.
Writeback of an ingest's data is started as it is written
(sync_file_range), so the fsync at commit only waits for the last bytes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from skiff.oci.digest import ALGORITHMS, CANONICAL, Digest, Digester

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Info:
    digest: Digest
    size: int
    created_at: float
    updated_at: float
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    ref: str
    offset: int
    total: int
    expected: Digest | None
    started_at: float
    updated_at: float


def _read_small(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write_small(path: str, text: str) -> None:
    # atomic but not fsynced: ingest metadata is only a hint (the writer's
    # caller passes it again, commit verifies the bytes), as in containerd
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _remove_dir(path: str) -> None:
    """Remove an ingest directory: renamed first (atomic), then deleted."""
    import shutil

    trash = os.path.join(
        os.path.dirname(path),
        f".removing-{os.path.basename(path)}-{os.getpid()}-{time.monotonic_ns()}",
    )
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


_SYNC_FILE_RANGE_WRITE = 2
_FALLOC_FL_KEEP_SIZE = 1
_WRITEBACK_STEP = 8 << 20  # start writeback every this many bytes
_PREALLOCATE_MIN = 1 << 20
# blocks are reserved this far ahead of the writes, never further: the
# total is only a claim (a hostile manifest may say a terabyte)
_PREALLOCATE_STEP = 32 << 20
_libc: Any = None


def _libc_calls() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        try:
            _libc = ctypes.CDLL(None, use_errno=True)
            _libc.sync_file_range.argtypes = [
                ctypes.c_int,
                ctypes.c_int64,
                ctypes.c_int64,
                ctypes.c_uint,
            ]
            _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        except (OSError, AttributeError):
            _libc = False
    return _libc


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range back now (no waiting), so
    the fsync at commit finds little left to do. Only a hint: errors and
    a libc without the call are ignored, commit's fsync is what counts."""
    if libc := _libc_calls():
        libc.sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def _preallocate(fd: int, offset: int, length: int) -> None:
    """Reserve blocks the blob is about to fill, without changing its size
    (the resume offset): ext4 then skips its per-page delayed allocation,
    about a third of the kernel's cost of each write. A hint; failures
    are ignored."""
    if libc := _libc_calls():
        libc.fallocate(fd, _FALLOC_FL_KEEP_SIZE, offset, length)


class ContentStore:
    """Blobs by digest under `root`; safe for many threads and processes."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        for algorithm in ALGORITHMS:
            os.makedirs(os.path.join(self.root, "blobs", algorithm), exist_ok=True)
        ingest = os.path.join(self.root, "ingest")
        os.makedirs(ingest, exist_ok=True)
        for name in os.listdir(ingest):
            if name.startswith(".removing-"):  # left by a process that died removing it
                import shutil

                shutil.rmtree(os.path.join(ingest, name), ignore_errors=True)

    # -- reading -----------------------------------------------------------

    def blob_path(self, digest: Digest | str) -> str:
        d = Digest(digest)
        return os.path.join(self.root, "blobs", d.algorithm, d.encoded)

    def info(self, digest: Digest | str) -> Info:
        d = Digest(digest)
        try:
            st = os.stat(self.blob_path(d))
        except FileNotFoundError:
            raise NotFound(f"content {d}: not found")
        return Info(digest=d, size=st.st_size, created_at=st.st_ctime, updated_at=st.st_mtime)

    def exists(self, digest: Digest | str) -> bool:
        return os.path.exists(self.blob_path(digest))

    def open(self, digest: Digest | str) -> BinaryIO:
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found")

    def read_at(self, digest: Digest | str, offset: int, size: int = -1) -> bytes:
        if offset < 0:
            raise InvalidArgument("negative offset")
        with self.open(digest) as f:
            f.seek(offset)
            return f.read(size)

    def read_all(self, digest: Digest | str, limit: int | None = None) -> bytes:
        info = self.info(digest)
        if limit is not None and info.size > limit:
            raise InvalidArgument(f"content {digest}: {info.size} bytes exceeds {limit}")
        return self.read_at(digest, 0)

    def walk(self) -> Iterator[Info]:
        for algorithm in ALGORITHMS:
            base = os.path.join(self.root, "blobs", algorithm)
            for name in sorted(os.listdir(base)):
                try:
                    yield self.info(f"{algorithm}:{name}")
                except (NotFound, InvalidArgument):
                    continue  # a stray file is not content

    def delete(self, digest: Digest | str) -> None:
        try:
            os.unlink(self.blob_path(digest))
        except FileNotFoundError:
            raise NotFound(f"content {digest}: not found")

    # -- writing -----------------------------------------------------------

    def _ingest_dir(self, ref: str) -> str:
        if not ref:
            raise InvalidArgument("ingest ref must not be empty")
        return os.path.join(self.root, "ingest", hashlib.sha256(ref.encode()).hexdigest())

    def writer(self, ref: str, *, total: int = 0, expected: Digest | str | None = None) -> Writer:
        """Open the ingest `ref`, continuing from where an earlier writer stopped.

        Only one writer may hold a ref at a time (others get Unavailable); a
        blob already committed under `expected` gives AlreadyExists.
        """
        exp = Digest(expected) if expected else None
        path = self._ingest_dir(ref)
        lock_path = os.path.join(path, "lock")
        while True:
            if exp is not None and self.exists(exp):
                raise AlreadyExists(f"content {exp}: already exists")
            # not makedirs(exist_ok=True): it fails if the directory is
            # renamed away between its mkdir and its isdir check
            with contextlib.suppress(FileExistsError):
                os.mkdir(path)
            try:
                lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # the ingest was committed or aborted just now: look again
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise Unavailable(f"ref {ref} locked: another writer is active")
            # a writer that committed moved its directory away while holding
            # the lock: a lock on a file no longer at `lock_path` is no lock
            try:
                st, held = os.stat(lock_path), os.fstat(lock_fd)
                same = (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)
            except FileNotFoundError:
                same = False
            if same and exp is not None and self.exists(exp):
                # committed by the writer we waited for: this directory is ours and useless
                _remove_dir(path)
                os.close(lock_fd)
                raise AlreadyExists(f"content {exp}: already exists")
            if same:
                break
            os.close(lock_fd)
        try:
            if not os.path.exists(os.path.join(path, "ref")):
                _write_small(os.path.join(path, "ref"), ref)
                _write_small(os.path.join(path, "startedat"), repr(time.time()))
            old_expected = _read_small(os.path.join(path, "expected"))
            if exp is not None and old_expected and old_expected != exp:
                # a different blob under the same ref: the partial data is useless
                with open(os.path.join(path, "data"), "wb"):
                    pass
            if total:
                _write_small(os.path.join(path, "total"), str(total))
            if exp is not None:
                _write_small(os.path.join(path, "expected"), str(exp))
            return Writer(self, ref, path, lock_fd, total, exp)
        except BaseException:
            os.close(lock_fd)
            raise

    def status(self, ref: str) -> Status:
        path = self._ingest_dir(ref)
        if not os.path.exists(os.path.join(path, "ref")):
            raise NotFound(f"ingest {ref}: not found")
        return self._status_of(path)

    def _status_of(self, path: str) -> Status:
        data = os.path.join(path, "data")
        try:
            st = os.stat(data)
            offset, updated = st.st_size, st.st_mtime
        except FileNotFoundError:
            offset, updated = 0, 0.0
        expected = _read_small(os.path.join(path, "expected"))
        started = _read_small(os.path.join(path, "startedat"))
        return Status(
            ref=_read_small(os.path.join(path, "ref")),
            offset=offset,
            total=int(_read_small(os.path.join(path, "total")) or 0),
            expected=Digest(expected) if expected else None,
            started_at=float(started or 0),
            updated_at=updated,
        )

    def statuses(self) -> list[Status]:
        base = os.path.join(self.root, "ingest")
        out = []
        for name in sorted(os.listdir(base)):
            if not name.startswith(".") and os.path.exists(os.path.join(base, name, "ref")):
                out.append(self._status_of(os.path.join(base, name)))
        return out

    def abort(self, ref: str) -> None:
        path = self._ingest_dir(ref)
        if not os.path.exists(path):
            raise NotFound(f"ingest {ref}: not found")
        _remove_dir(path)

    def write_blob(
        self, data: bytes, expected: Digest | str | None = None, ref: str = ""
    ) -> Digest:
        """Ingest a whole blob held in memory; returns its digest."""
        exp = Digest(expected) if expected else Digest.from_bytes(data)
        if self.exists(exp):
            return exp
        deadline = time.monotonic() + 30
        while True:
            try:
                w = self.writer(ref or f"blob-{exp}", total=len(data), expected=exp)
                break
            except AlreadyExists:
                return exp
            except Unavailable:
                # the same blob is being written by someone else: wait for it
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
                if self.exists(exp):
                    return exp
        with w:
            w.truncate()
            w.write(data)
            with contextlib.suppress(AlreadyExists):  # committed meanwhile by another ref
                w.commit(len(data), exp)
        return exp


class Writer:
    """An open ingest. `offset` is where the next write lands; `close`
    without `commit` keeps the bytes for a later writer to resume."""

    def __init__(
        self,
        store: ContentStore,
        ref: str,
        path: str,
        lock_fd: int,
        total: int,
        expected: Digest | None,
    ) -> None:
        self.store = store
        self.ref = ref
        self.total = total
        self.expected = expected
        self._dir = path
        self._lock_fd: int | None = lock_fd
        self.data_path = os.path.join(path, "data")
        self._fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self._digester = Digester(expected.algorithm if expected else CANONICAL)
        # the hash state cannot be saved, so a resumed ingest re-reads its bytes
        self.offset = 0
        while chunk := os.pread(self._fd, _CHUNK, self.offset):
            self._digester.update(chunk)
            self.offset += len(chunk)
        self._written_back = self.offset & ~0xFFFF  # writeback started up to here
        self._reserved = self.offset  # blocks reserved up to here

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes | memoryview) -> int:
        if self._fd < 0:
            raise FailedPrecondition(f"ingest {self.ref}: writer closed")
        view = memoryview(data)
        end = self.offset + len(view)
        if end > self._reserved and self.total >= _PREALLOCATE_MIN:
            grow = min(max(self.total, end) - self._reserved, _PREALLOCATE_STEP)
            _preallocate(self._fd, self._reserved, grow)
            self._reserved += grow
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], self.offset + done)
        self._digester.update(view)
        self.offset += done
        if self.offset - self._written_back >= _WRITEBACK_STEP:
            # whole pages only: a page under writeback may stall the next write to it
            end = self.offset & ~0xFFFF
            _start_writeback(self._fd, self._written_back, end - self._written_back)
            self._written_back = end
        return done

    def truncate(self, size: int = 0) -> None:
        """Drop bytes after `size` (0 restarts the ingest)."""
        if size > self.offset:
            raise InvalidArgument("cannot truncate forward")
        os.ftruncate(self._fd, size)
        self._written_back = 0
        self._digester = Digester(self._digester.algorithm)
        self.offset = 0
        while self.offset < size and (chunk := os.pread(self._fd, _CHUNK, self.offset)):
            self._digester.update(chunk)
            self.offset += len(chunk)
        self._reserved = self.offset

    def digest(self) -> Digest:
        return self._digester.digest()

    def commit(self, size: int = 0, expected: Digest | str | None = None) -> Digest:
        """Verify and publish the blob; nothing is published on a mismatch."""
        exp = Digest(expected) if expected else self.expected
        if exp is not None and exp.algorithm != self._digester.algorithm:
            d = Digester(exp.algorithm)
            pos = 0
            while chunk := os.pread(self._fd, _CHUNK, pos):
                d.update(chunk)
                pos += len(chunk)
            actual = d.digest()
        else:
            actual = self.digest()
        want_size = size or self.total
        try:
            if want_size and self.offset != want_size:
                raise FailedPrecondition(
                    f"commit {self.ref}: unexpected size {self.offset}, expected {want_size}"
                )
            if exp is not None and actual != exp:
                raise FailedPrecondition(
                    f"commit {self.ref}: unexpected digest {actual}, expected {exp}"
                )
        except FailedPrecondition:
            # wrong bytes are not worth resuming
            self._discard()
            raise
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o444)
        target = self.store.blob_path(actual)
        if os.path.exists(target):
            self._discard()
            raise AlreadyExists(f"content {actual}: already exists")
        os.rename(self.data_path, target)
        dir_fd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._discard()
        return actual

    def _discard(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        # moved away while the lock is still held, so that a writer opening
        # the same ref meanwhile starts a fresh directory instead of having
        # its files deleted under it
        _remove_dir(self._dir)
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
