"""Streaming decompression of layer blobs (gzip, zstd or plain, told apart
by their magic bytes) and gzip compression for layers we write. Image layer.

`decoded_chunks` is the fast path that layer apply uses: each chunk is
handed on as it is decoded, input is read into one reused buffer, and
gzip's CRC-32 may be left unchecked where the caller verifies the blob by
digest anyway (the CRC costs almost as much CPU as a sha256 pass here).
`decompressed` wraps it in a `read(n)` object for everyone else.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO

from skiff.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20
# compressed bytes per read: small enough that a chunk decodes into the
# output bound below without zlib copying the rest into unconsumed_tail
_IN_CHUNK = 1 << 17
# decoded bytes per chunk: fits the caches the hash and the write read it from
_OUT_CHUNK = 1 << 18

_FTEXT, _FHCRC, _FEXTRA, _FNAME, _FCOMMENT = 1, 2, 4, 8, 16


class _Input:
    """The compressed stream: a reused read buffer plus bytes put back."""

    def __init__(self, src: BinaryIO, head: bytes, size: int = _IN_CHUNK) -> None:
        self._src = src
        self._readinto = getattr(src, "readinto", None)
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._pending: bytes | memoryview = head

    def chunk(self) -> bytes | memoryview:
        """The next input bytes (b"" at the end); valid until the next call."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        if self._readinto is not None:
            n = self._readinto(self._view)
            return self._view[:n] if n else b""
        data = self._src.read(len(self._buf))
        return data or b""

    def put_back(self, data: bytes | memoryview) -> None:
        if data:
            self._pending = bytes(data) + bytes(self._pending) if self._pending else data

    def read(self, n: int = -1) -> bytes:
        """File-like reading, for decoders that pull (zstandard)."""
        data = self.chunk()
        if 0 <= n < len(data):
            self.put_back(bytes(data[n:]))
            data = data[:n]
        return bytes(data)

    def take(self, n: int) -> bytes:
        """Exactly `n` bytes, or fewer at the end of the stream."""
        out = bytearray()
        while len(out) < n:
            data = self.chunk()
            if not data:
                break
            want = n - len(out)
            out += data[:want]
            if len(data) > want:
                self.put_back(bytes(data[want:]))
        return bytes(out)

    def take_until_nul(self) -> None:
        while True:
            data = self.chunk()
            if not data:
                raise InvalidArgument("truncated gzip stream")
            i = bytes(data).find(b"\0")
            if i >= 0:
                self.put_back(bytes(data[i + 1 :]))
                return

    def skip_zeros(self) -> bool:
        """Skip zero padding; False at the end of the stream."""
        while True:
            data = self.chunk()
            if not data:
                return False
            rest = bytes(data).lstrip(b"\0")
            if rest:
                self.put_back(rest)
                return True


def _gzip_header(inp: _Input) -> None:
    head = inp.take(10)
    if len(head) < 10:
        raise InvalidArgument("truncated gzip stream")
    if head[:2] != GZIP_MAGIC:
        raise InvalidArgument("invalid gzip stream: not a gzip member")
    if head[2] != 8:
        raise InvalidArgument(f"invalid gzip stream: unknown compression method {head[2]}")
    flags = head[3]
    if flags & _FEXTRA:
        xlen = inp.take(2)
        n = struct.unpack("<H", xlen)[0] if len(xlen) == 2 else -1
        if n < 0 or len(inp.take(n)) < n:
            raise InvalidArgument("truncated gzip stream")
    if flags & _FNAME:
        inp.take_until_nul()
    if flags & _FCOMMENT:
        inp.take_until_nul()
    if flags & _FHCRC and len(inp.take(2)) < 2:
        raise InvalidArgument("truncated gzip stream")


def _gunzip(inp: _Input, check_crc: bool) -> Iterator[bytes]:
    """Decode gzip members one after another (pigz and friends write many);
    zero padding after the last member is allowed."""
    first = True
    while True:
        if not first and not inp.skip_zeros():
            return
        first = False
        _gzip_header(inp)
        # raw deflate: the wrapper is ours, so the CRC is computed only if asked
        z = zlib.decompressobj(-zlib.MAX_WBITS)
        crc = 0
        size = 0
        while not z.eof:
            data: bytes | memoryview = inp.chunk()
            if not data:
                raise InvalidArgument("truncated gzip stream")
            while True:
                try:
                    out = z.decompress(data, _OUT_CHUNK)
                except zlib.error as e:
                    raise InvalidArgument(f"invalid gzip stream: {e}")
                if out:
                    if check_crc:
                        crc = zlib.crc32(out, crc)
                    size += len(out)
                    yield out
                if z.eof:
                    inp.put_back(z.unused_data)
                    break
                data = z.unconsumed_tail
                if not data:
                    break
        trailer = inp.take(8)
        if len(trailer) < 8:
            raise InvalidArgument("truncated gzip stream")
        want_crc, want_size = struct.unpack("<II", trailer)
        if want_size != size & 0xFFFFFFFF:
            raise InvalidArgument("invalid gzip stream: length mismatch")
        if check_crc and want_crc != crc:
            raise InvalidArgument("invalid gzip stream: crc mismatch")


def _plain(inp: _Input) -> Iterator[bytes | memoryview]:
    while data := inp.chunk():
        yield data


def _zstd(src: BinaryIO, head: bytes) -> Iterator[memoryview]:
    import zstandard

    raw: Any = _Input(src, head)  # has the read(n) that zstandard pulls with
    reader: Any = zstandard.ZstdDecompressor().stream_reader(
        raw, read_across_frames=True, read_size=_IN_CHUNK
    )
    buf = memoryview(bytearray(_OUT_CHUNK))
    try:
        while n := reader.readinto(buf):
            yield buf[:n]
    except zstandard.ZstdError as e:
        raise InvalidArgument(f"invalid zstd stream: {e}")


def _read_head(src: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        data = src.read(n - len(head))
        if not data:
            break
        head += data
    return head


def decoded_chunks(src: BinaryIO, *, check_crc: bool = True) -> Iterator[bytes | memoryview]:
    """The uncompressed bytes of a layer blob, decoded as they are read, in
    chunks of any size (never empty). A chunk may be a view of a buffer that
    the next chunk reuses: use it before asking for the next."""
    head = _read_head(src, 4)
    if head.startswith(GZIP_MAGIC):
        return _gunzip(_Input(src, head), check_crc)
    if head.startswith(ZSTD_MAGIC):
        return _zstd(src, head)
    return _plain(_Input(src, head, _CHUNK))


class _Decompressed:
    """`read(n)` over `decoded_chunks` (returns at most n bytes, b"" at end)."""

    def __init__(self, chunks: Iterator[bytes | memoryview]) -> None:
        self._chunks = chunks
        self._rest: bytes | memoryview = b""

    def read(self, n: int = -1) -> bytes:
        if not self._rest:
            self._rest = next(self._chunks, b"")
        if n < 0 or n >= len(self._rest):
            out, self._rest = bytes(self._rest), b""
            return out
        out = bytes(self._rest[:n])
        self._rest = self._rest[n:]
        return out


def decompressed(src: BinaryIO) -> Any:
    """The uncompressed bytes of a layer blob, decoded as they are read
    (an object with `read(n)`, which may return fewer bytes than asked);
    gzip's CRC is checked."""
    return _Decompressed(decoded_chunks(src, check_crc=True))


class GzipWriter:
    """Write side: gzip-compress into `dst` (a file-like with write)."""

    def __init__(self, dst: Any, level: int = 6) -> None:
        self._dst = dst
        self._z = zlib.compressobj(level, zlib.DEFLATED, 31)

    def write(self, data: bytes) -> int:
        out = self._z.compress(data)
        if out:
            self._dst.write(out)
        return len(data)

    def close(self) -> None:
        self._dst.write(self._z.flush())
