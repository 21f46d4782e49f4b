"""ttrpc's wire format: a 10-byte frame header and the Request/Response messages.

The layer under skiff.ttrpc's client and server. A frame is
``uint32 length | uint32 stream id | uint8 type | uint8 flags`` (big endian)
followed by ``length`` bytes of a protobuf message: containerd.ttrpc.Request for
type 1, containerd.ttrpc.Response for type 2.
"""

from __future__ import annotations

import struct

from skiff.ttrpc.protobuf import BYTES, INT64, STRING, Field, Message, Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

HEADER = struct.Struct(">IIBB")
HEADER_SIZE = HEADER.size  # 10
MAX_MESSAGE = 4 << 20  # ttrpc's limit on one frame's data

TYPE_REQUEST = 1
TYPE_RESPONSE = 2
TYPE_DATA = 3

FLAG_REMOTE_CLOSED = 1
FLAG_NO_DATA = 2

# gRPC status codes used on the wire
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14


class KeyValue(Message):
    NAME = "containerd.ttrpc.KeyValue"
    key: str
    value: str
    FIELDS = (Field(1, "key", STRING), Field(2, "value", STRING))


class Request(Message):
    NAME = "containerd.ttrpc.Request"
    service: str
    method: str
    payload: bytes
    timeout_nano: int
    metadata: list[KeyValue]
    FIELDS = (
        Field(1, "service", STRING),
        Field(2, "method", STRING),
        Field(3, "payload", BYTES),
        Field(4, "timeout_nano", INT64),
        Field(5, "metadata", KeyValue, repeated=True),
    )


class Response(Message):
    NAME = "containerd.ttrpc.Response"
    status: Status | None
    payload: bytes
    FIELDS = (Field(1, "status", Status), Field(2, "payload", BYTES))


class FrameTooLarge(Exception):
    """A peer announced a frame over MAX_MESSAGE; its data was skipped."""

    def __init__(self, stream_id: int, size: int) -> None:
        super().__init__(f"ttrpc: frame of {size} bytes exceeds {MAX_MESSAGE}")
        self.stream_id = stream_id


def encode_frame(stream_id: int, msg_type: int, data: bytes, flags: int = 0) -> bytes:
    return HEADER.pack(len(data), stream_id, msg_type, flags) + data


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """Read exactly size bytes; None on a clean end of stream before any byte."""
    buf = bytearray()
    while len(buf) < size:
        chunk = sock.recv(min(size - len(buf), 1 << 16))
        if not chunk:
            if not buf:
                return None
            raise ConnectionError("ttrpc: connection closed inside a frame")
        buf += chunk
    return bytes(buf)


def read_frame(sock: socket.socket) -> tuple[int, int, int, bytes] | None:
    """Read one frame: (stream id, type, flags, data), or None at end of stream.

    A frame larger than MAX_MESSAGE is read and dropped, then reported by
    FrameTooLarge so the caller can answer it and carry on.
    """
    header = _recv_exact(sock, HEADER_SIZE)
    if header is None:
        return None
    length, stream_id, msg_type, flags = HEADER.unpack(header)
    if length > MAX_MESSAGE:
        remaining = length
        while remaining:
            chunk = sock.recv(min(remaining, 1 << 16))
            if not chunk:
                raise ConnectionError("ttrpc: connection closed inside a frame")
            remaining -= len(chunk)
        raise FrameTooLarge(stream_id, length)
    data = _recv_exact(sock, length) if length else b""
    if data is None:
        raise ConnectionError("ttrpc: connection closed inside a frame")
    return stream_id, msg_type, flags, data
