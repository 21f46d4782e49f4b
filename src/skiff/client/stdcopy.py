"""Demultiplexing of the Engine API's multiplexed stdout/stderr streams.

Used by the client (DESIGN.md: skiff CLI -> Engine API) for attach, exec and
logs of containers without a tty: each frame is an 8-byte header (stream
byte 0/1/2, three zero bytes, big-endian uint32 length) and its payload.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

STDIN, STDOUT, STDERR, SYSTEM = 0, 1, 2, 3


class Demuxer:
    """Feeds on arbitrary byte chunks and yields (stream, payload) frames."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes]]:
        self.buf += data
        while len(self.buf) >= 8:
            stream = self.buf[0]
            (length,) = struct.unpack(">I", self.buf[4:8])
            if len(self.buf) < 8 + length:
                break
            payload = bytes(self.buf[8 : 8 + length])
            del self.buf[: 8 + length]
            yield stream, payload


def demux(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    d = Demuxer()
    for chunk in chunks:
        yield from d.feed(chunk)


def frame(stream: int, payload: bytes) -> bytes:
    return struct.pack(">BxxxI", stream, len(payload)) + payload
