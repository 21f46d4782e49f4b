"""The stdlib messages in skiff.ttrpc match the .proto sources in skiff/api/proto field for field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from skiff.ttrpc import events, task, wire
from skiff.ttrpc.protobuf import Any_, Message, Status, Timestamp

PROTO_ROOT = Path(__file__).resolve().parents[3] / "src" / "skiff" / "api" / "proto"

_KINDS = {
    9: "string",
    12: "bytes",
    8: "bool",
    13: "uint32",
    4: "uint64",
    5: "int32",
    3: "int64",
    14: "enum",
    11: "message",
}


def _descriptors(tmp_path: Path) -> dict[str, object]:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) compiles the protos")
    from google.protobuf import descriptor_pb2

    files = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    out = tmp_path / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--descriptor_set_out={out}",
            *files,
        ],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    messages: dict[str, object] = {}
    for f in fds.file:
        for m in f.message_type:
            messages[f"{f.package}.{m.name}"] = m
    return messages


def _all_messages() -> list[type[Message]]:
    found = []
    for module in (task, events, wire):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Message) and value.NAME:
                found.append(value)
    return [*found, Any_, Status, Timestamp]


def test_messages_match_proto_sources(tmp_path: Path) -> None:
    descriptors = _descriptors(tmp_path)
    for cls in _all_messages():
        if cls.NAME.startswith("google.protobuf.Empty"):
            continue
        assert cls.NAME in descriptors, f"{cls.NAME} has no .proto source"
        d = descriptors[cls.NAME]
        proto_fields = {f.number: (f.name, _KINDS[f.type], f.label == 3) for f in d.field}  # type: ignore[attr-defined]
        ours = {f.number: (f.name, f.kind, f.repeated) for f in cls.FIELDS}
        assert ours == proto_fields, cls.NAME
