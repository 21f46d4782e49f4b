"""Streaming decompression of layer blobs (gzip, zstd or plain, told apart
by their magic bytes) and gzip compression for layers we write. Image layer.
"""

from __future__ import annotations

import io
import zlib
from typing import Any, BinaryIO

from skiff.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


class _Gunzip(io.RawIOBase):
    """gzip decoder over a stream; handles multi-member files (pigz)."""

    def __init__(self, src: BinaryIO, head: bytes) -> None:
        self._src = src
        self._pending = head
        self._z = zlib.decompressobj(31)
        self._out = b""
        self._eof = False
        self._in_member = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        while not self._out and not self._eof:
            data = self._pending or self._src.read(_CHUNK)
            self._pending = b""
            if not data:
                if self._in_member:
                    raise InvalidArgument("truncated gzip stream")
                self._eof = True
                break
            if not self._in_member and not data.lstrip(b"\0"):
                continue  # zero padding after the last member
            self._in_member = True
            try:
                self._out = self._z.decompress(data)
            except zlib.error as e:
                raise InvalidArgument(f"invalid gzip stream: {e}")
            if self._z.eof:
                self._pending = self._z.unused_data
                self._z = zlib.decompressobj(31)
                self._in_member = False
        n = min(len(view), len(self._out))
        view[:n] = self._out[:n]
        self._out = self._out[n:]
        return n


class _Prefixed(io.RawIOBase):
    """A stream with some already-read bytes put back in front."""

    def __init__(self, src: BinaryIO, head: bytes) -> None:
        self._src = src
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(view))
        view[: len(data)] = data
        return len(data)


def _read_head(src: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        data = src.read(n - len(head))
        if not data:
            break
        head += data
    return head


def decompressed(src: BinaryIO) -> BinaryIO:
    """The uncompressed bytes of a layer blob, decoded as they are read."""
    head = _read_head(src, 4)
    if head.startswith(GZIP_MAGIC):
        return io.BufferedReader(_Gunzip(src, head), _CHUNK)
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        raw: Any = _Prefixed(src, head)
        reader: Any = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, read_size=_CHUNK
        )
        return io.BufferedReader(reader, _CHUNK)
    return io.BufferedReader(_Prefixed(src, head), _CHUNK)


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
