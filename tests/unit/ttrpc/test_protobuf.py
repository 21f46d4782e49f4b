"""The stdlib protobuf codec: known encodings, round trips, malformed input."""

from __future__ import annotations

import pytest

from skiff.errors import InvalidArgument
from skiff.ttrpc import events
from skiff.ttrpc import task as api
from skiff.ttrpc.protobuf import Any_, Status, Timestamp, decode_varint, encode_varint


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (300, b"\xac\x02"),
        (-1, b"\xff" * 9 + b"\x01"),
    ],
)
def test_varint_known_encodings(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    decoded, pos = decode_varint(encoded, 0)
    assert pos == len(encoded)
    assert decoded == value % (1 << 64)


def test_known_message_bytes() -> None:
    # protoc's encoding of CreateTaskResponse{pid: 150} and StartRequest{id: "a", exec_id: "b"}
    assert api.CreateTaskResponse(pid=150).encode() == b"\x08\x96\x01"
    assert api.StartRequest(id="a", exec_id="b").encode() == b"\x0a\x01a\x12\x01b"
    # zero values are not written (proto3)
    assert api.StateRequest().encode() == b""


def test_round_trip_nested_repeated_and_any() -> None:
    req = api.CreateTaskRequest(
        id="c1",
        bundle="/b",
        rootfs=[api.Mount(type="overlay", source="overlay", options=["lowerdir=/l", "ro"])],
        terminal=True,
        stdout="/fifo/out",
        options=Any_.pack(api.RuncOptions(binary_name="crun", root="/r")),
    )
    back = api.CreateTaskRequest.decode(req.encode())
    assert back == req
    assert back.options is not None
    assert back.options.unpack(api.RuncOptions).binary_name == "crun"


def test_signed_and_timestamp_fields() -> None:
    status = Status(code=-5, message="neg")
    assert Status.decode(status.encode()).code == -5
    ts = Timestamp.from_ns(1_700_000_000_123_456_789)
    back = events.TaskExit.decode(events.TaskExit(exited_at=ts, exit_status=137).encode())
    assert back.exited_at is not None and back.exited_at.to_ns() == 1_700_000_000_123_456_789
    assert back.exit_status == 137


def test_unknown_fields_are_skipped() -> None:
    # field 15 (varint), field 14 (fixed64), field 13 (fixed32) ahead of a known one
    data = b"\x78\x05" + b"\x71" + b"\0" * 8 + b"\x6d" + b"\0" * 4 + b"\x08\x07"
    assert api.StartResponse.decode(data).pid == 7


def test_packed_repeated_varints_decode() -> None:
    from skiff.ttrpc.protobuf import UINT32, Field, Message

    class Pids(Message):
        NAME = "test.Pids"
        pids: list[int]
        FIELDS = (Field(1, "pids", UINT32, repeated=True),)

    assert Pids.decode(b"\x0a\x03\x01\x02\x03").pids == [1, 2, 3]
    assert Pids.decode(Pids(pids=[4, 5]).encode()).pids == [4, 5]


@pytest.mark.parametrize(
    "data",
    [
        b"\x08",  # truncated varint
        b"\x0a\x05ab",  # length beyond the end
        b"\x0b",  # wire type 3 (groups) unsupported
        b"\x00\x01",  # field number 0
        b"\x0a\x02\xff\xfe",  # invalid utf-8 in a string
        b"\x08" + b"\xff" * 11,  # varint too long
    ],
)
def test_malformed_input_raises_invalid_argument(data: bytes) -> None:
    with pytest.raises(InvalidArgument):
        api.StartRequest.decode(data)


def test_wrong_wire_type_for_known_field() -> None:
    with pytest.raises(InvalidArgument):
        api.StartResponse.decode(b"\x0a\x01a")  # pid sent as a string


def test_unknown_constructor_field_is_an_error() -> None:
    with pytest.raises(TypeError):
        api.StartRequest(nope=1)


def test_any_type_name_ignores_url_prefix() -> None:
    a = Any_(type_url="types.containerd.io/containerd.runc.v1.Options", value=b"")
    assert a.type_name() == "containerd.runc.v1.Options"
    with pytest.raises(InvalidArgument):
        a.unpack(api.RuntimeOptions)
