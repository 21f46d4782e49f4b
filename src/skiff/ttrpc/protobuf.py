"""A small protocol-buffers wire codec on the standard library alone.

Sits under skiff.ttrpc (and so under skiff-shim and skiff-containerd): the shim
must not import grpcio or protobuf on its hot path, so the messages it speaks
are plain classes that declare their fields by number and are encoded here.
Only what containerd's shim and event APIs use is supported: varints (with
negative int32/int64 as ten-byte two's complement), length-delimited strings,
bytes and messages, fixed32/fixed64, repeated fields (packed or not).
"""

from __future__ import annotations

import struct
import time

from skiff.errors import InvalidArgument

# typing costs the shim 13 ms and a few hundred kB at start-up; mypy still sees it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any, ClassVar, Self, TypeVar

    M = TypeVar("M", bound="Message")

# Wire types
VARINT = 0
FIXED64 = 1
LEN = 2
FIXED32 = 5

# Field kinds a message may declare.
STRING = "string"
BYTES = "bytes"
BOOL = "bool"
UINT32 = "uint32"
UINT64 = "uint64"
INT32 = "int32"
INT64 = "int64"
ENUM = "enum"
FIXED64_KIND = "fixed64"
DOUBLE = "double"

_VARINT_KINDS = frozenset({BOOL, UINT32, UINT64, INT32, INT64, ENUM})
_DEFAULTS: dict[str, Any] = {
    STRING: "",
    BYTES: b"",
    BOOL: False,
    UINT32: 0,
    UINT64: 0,
    INT32: 0,
    INT64: 0,
    ENUM: 0,
    FIXED64_KIND: 0,
    DOUBLE: 0.0,
}


def encode_varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # negative ints take ten bytes, as protobuf does
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    end = len(data)
    while True:
        if pos >= end:
            raise InvalidArgument("protobuf: truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise InvalidArgument("protobuf: varint too long")


def _tag(number: int, wire_type: int) -> bytes:
    return encode_varint((number << 3) | wire_type)


def iter_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, raw value) for each field on the wire."""
    pos = 0
    end = len(data)
    while pos < end:
        key, pos = decode_varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise InvalidArgument("protobuf: field number 0")
        value: Any
        if wire_type == VARINT:
            value, pos = decode_varint(data, pos)
        elif wire_type == LEN:
            size, pos = decode_varint(data, pos)
            if pos + size > end:
                raise InvalidArgument("protobuf: truncated length-delimited field")
            value = bytes(data[pos : pos + size])
            pos += size
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise InvalidArgument("protobuf: truncated fixed64")
            value = bytes(data[pos : pos + 8])
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise InvalidArgument("protobuf: truncated fixed32")
            value = bytes(data[pos : pos + 4])
            pos += 4
        else:
            raise InvalidArgument(f"protobuf: unsupported wire type {wire_type}")
        yield number, wire_type, value


class Field:
    """One declared field: its number, attribute name, kind and cardinality."""

    __slots__ = ("kind", "message", "name", "number", "repeated")

    def __init__(
        self,
        number: int,
        name: str,
        kind: str | type[Message],
        *,
        repeated: bool = False,
    ) -> None:
        self.number = number
        self.name = name
        self.repeated = repeated
        if isinstance(kind, str):
            self.kind = kind
            self.message: type[Message] | None = None
        else:
            self.kind = "message"
            self.message = kind

    def default(self) -> Any:
        if self.repeated:
            return []
        if self.message is not None:
            return None
        return _DEFAULTS[self.kind]


def _signed(value: int, bits: int) -> int:
    value &= (1 << 64) - 1
    if bits == 32:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value
    return value - (1 << 64) if value & (1 << 63) else value


def _encode_scalar(field: Field, value: Any) -> bytes:
    kind = field.kind
    if kind == STRING:
        raw: bytes = value.encode()
        return _tag(field.number, LEN) + encode_varint(len(raw)) + raw
    if kind == BYTES:
        return _tag(field.number, LEN) + encode_varint(len(value)) + bytes(value)
    if kind == BOOL:
        return _tag(field.number, VARINT) + (b"\x01" if value else b"\x00")
    if kind in _VARINT_KINDS:
        return _tag(field.number, VARINT) + encode_varint(int(value))
    if kind == FIXED64_KIND:
        return _tag(field.number, FIXED64) + struct.pack("<Q", value)
    if kind == DOUBLE:
        return _tag(field.number, FIXED64) + struct.pack("<d", value)
    raise TypeError(f"unknown field kind {kind}")


def _decode_scalar(field: Field, wire_type: int, raw: Any) -> Any:
    kind = field.kind
    if kind == STRING:
        if wire_type != LEN:
            raise InvalidArgument(f"protobuf: field {field.name}: wrong wire type")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise InvalidArgument(f"protobuf: field {field.name}: invalid utf-8")
    if kind == BYTES:
        if wire_type != LEN:
            raise InvalidArgument(f"protobuf: field {field.name}: wrong wire type")
        return raw
    if kind in _VARINT_KINDS:
        if wire_type != VARINT:
            raise InvalidArgument(f"protobuf: field {field.name}: wrong wire type")
        if kind == BOOL:
            return raw != 0
        if kind == UINT32:
            return raw & 0xFFFFFFFF
        if kind == INT32:
            return _signed(raw, 32)
        if kind == INT64:
            return _signed(raw, 64)
        return raw
    if kind in (FIXED64_KIND, DOUBLE):
        if wire_type != FIXED64:
            raise InvalidArgument(f"protobuf: field {field.name}: wrong wire type")
        return struct.unpack("<Q" if kind == FIXED64_KIND else "<d", raw)[0]
    raise TypeError(f"unknown field kind {kind}")


class Message:
    """Base of every message: subclasses list their fields in FIELDS.

    Fields at their zero value are not written (proto3); unknown fields read
    from the wire are skipped, so newer peers can talk to us.
    """

    FIELDS: ClassVar[tuple[Field, ...]] = ()
    NAME: ClassVar[str] = ""  # the fully qualified protobuf name, for Any
    TOPIC: ClassVar[str] = ""  # for events: the topic they are published on
    _BY_NUMBER: ClassVar[dict[int, Field]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._BY_NUMBER = {f.number: f for f in cls.FIELDS}

    def __init__(self, **values: Any) -> None:
        for f in self.FIELDS:
            setattr(self, f.name, f.default())
        for name, value in values.items():
            if not hasattr(self, name) or name not in {f.name for f in self.FIELDS}:
                raise TypeError(f"{type(self).__name__} has no field {name}")
            setattr(self, name, value)

    def encode(self) -> bytes:
        out = bytearray()
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if f.repeated:
                for item in value:
                    out += _encode_one(f, item)
            elif f.message is not None:
                if value is not None:
                    out += _encode_one(f, value)
            elif value != _DEFAULTS[f.kind]:
                out += _encode_scalar(f, value)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes | memoryview) -> Self:
        msg = cls()
        by_number = cls._BY_NUMBER
        for number, wire_type, raw in iter_fields(data):
            f = by_number.get(number)
            if f is None:
                continue
            if f.message is not None:
                if wire_type != LEN:
                    raise InvalidArgument(f"protobuf: field {f.name}: wrong wire type")
                value = f.message.decode(raw)
                if f.repeated:
                    getattr(msg, f.name).append(value)
                else:
                    setattr(msg, f.name, value)
            elif f.repeated:
                items = getattr(msg, f.name)
                if wire_type == LEN and f.kind in _VARINT_KINDS:
                    # a packed run of varints
                    pos = 0
                    while pos < len(raw):
                        v, pos = decode_varint(raw, pos)
                        items.append(_decode_scalar(f, VARINT, v))
                else:
                    items.append(_decode_scalar(f, wire_type, raw))
            else:
                setattr(msg, f.name, _decode_scalar(f, wire_type, raw))
        return msg

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, f.name) == getattr(other, f.name) for f in self.FIELDS)

    def __repr__(self) -> str:
        parts = []
        for f in self.FIELDS:
            value = getattr(self, f.name)
            if value != f.default():
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __hash__ = None  # type: ignore[assignment]


def _encode_one(field: Field, value: Any) -> bytes:
    if field.message is not None:
        raw: bytes = value.encode()
        return _tag(field.number, LEN) + encode_varint(len(raw)) + raw
    return _encode_scalar(field, value)


# --- google.protobuf well-known types -------------------------------------------


class Empty(Message):
    NAME = "google.protobuf.Empty"
    FIELDS = ()


class Timestamp(Message):
    NAME = "google.protobuf.Timestamp"
    seconds: int
    nanos: int
    FIELDS = (Field(1, "seconds", INT64), Field(2, "nanos", INT32))

    @classmethod
    def from_ns(cls, ns: int) -> Timestamp:
        return cls(seconds=ns // 1_000_000_000, nanos=ns % 1_000_000_000)

    @classmethod
    def now(cls) -> Timestamp:
        return cls.from_ns(time.time_ns())

    def to_ns(self) -> int:
        return self.seconds * 1_000_000_000 + self.nanos


class Any_(Message):
    """google.protobuf.Any: a type URL and the encoded message."""

    NAME = "google.protobuf.Any"
    type_url: str
    value: bytes
    FIELDS = (Field(1, "type_url", STRING), Field(2, "value", BYTES))

    @classmethod
    def pack(cls, msg: Message, *, prefix: str = "") -> Any_:
        # containerd's typeurl writes bare message names ("containerd.events.TaskExit")
        return cls(type_url=prefix + msg.NAME, value=msg.encode())

    def type_name(self) -> str:
        """The message name, without any "host/" prefix of the URL."""
        return self.type_url.rsplit("/", 1)[-1]

    def unpack(self, cls: type[M]) -> M:
        if self.type_name() != cls.NAME:
            raise InvalidArgument(f"any holds {self.type_url}, not {cls.NAME}")
        return cls.decode(self.value)


class Status(Message):
    """google.rpc.Status: the error of a ttrpc call."""

    NAME = "google.rpc.Status"
    code: int
    message: str
    details: list[Any_]
    FIELDS = (
        Field(1, "code", INT32),
        Field(2, "message", STRING),
        Field(3, "details", Any_, repeated=True),
    )
