"""Streaming decompression of layer blobs (gzip, zstd or plain, told apart
by their magic bytes) and gzip compression for layers we write. Image layer.
"""

from __future__ import annotations

import zlib
from typing import Any, BinaryIO

from skiff.errors import InvalidArgument

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHUNK = 1 << 20


class _Gunzip:
    """gzip decoder over a stream; handles multi-member files (pigz).

    `read` hands out each decoded chunk as zlib returns it: tarfile does
    its own buffering, and every extra copy of a layer's bytes costs."""

    def __init__(self, src: BinaryIO, head: bytes) -> None:
        self._src = src
        self._pending = head
        self._z = zlib.decompressobj(31)
        self._eof = False
        self._in_member = False

    def read(self, n: int = -1) -> bytes:
        limit = n if n > 0 else _CHUNK
        while not self._eof:
            if self._z.unconsumed_tail:
                data = self._z.unconsumed_tail
            else:
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
                out = self._z.decompress(data, limit)
            except zlib.error as e:
                raise InvalidArgument(f"invalid gzip stream: {e}")
            if self._z.eof:
                self._pending = self._z.unused_data
                self._z = zlib.decompressobj(31)
                self._in_member = False
            if out:
                return out
        return b""


class _Prefixed:
    """A stream with some already-read bytes put back in front."""

    def __init__(self, src: BinaryIO, head: bytes) -> None:
        self._src = src
        self._head = head

    def read(self, n: int = -1) -> bytes:
        if self._head:
            head, self._head = self._head, b""
            return head
        return self._src.read(n if n > 0 else _CHUNK)


def _read_head(src: BinaryIO, n: int) -> bytes:
    head = b""
    while len(head) < n:
        data = src.read(n - len(head))
        if not data:
            break
        head += data
    return head


def decompressed(src: BinaryIO) -> Any:
    """The uncompressed bytes of a layer blob, decoded as they are read
    (an object with `read(n)`, which may return fewer bytes than asked)."""
    head = _read_head(src, 4)
    if head.startswith(GZIP_MAGIC):
        return _Gunzip(src, head)
    if head.startswith(ZSTD_MAGIC):
        import zstandard

        raw: Any = _Prefixed(src, head)
        reader: Any = zstandard.ZstdDecompressor().stream_reader(
            raw, read_across_frames=True, read_size=_CHUNK
        )
        return reader
    return _Prefixed(src, head)


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
