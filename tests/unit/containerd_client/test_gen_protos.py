"""skiff.api.gen is what tools/gen_protos.py makes from skiff/api/proto, and matches containerd 1.6."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tools"))
import gen_protos  # noqa: E402


def _descriptor_set(tmp_path: Path) -> dict[str, bytes]:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) compiles the protos")
    from google.protobuf import descriptor_pb2

    out = tmp_path / "set.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{gen_protos.PROTO_ROOT}",
            f"--descriptor_set_out={out}",
            *gen_protos.proto_files(),
        ],
        check=True,
    )
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f.SerializeToString() for f in fds.file}


def _module_name(proto: str, suffix: str) -> str:
    return "skiff.api.gen." + proto.removesuffix(".proto").replace("/", ".") + suffix


def _strip_json_names(fd: object) -> None:
    # protoc's descriptor sets carry json_name, the embedded descriptors do not
    def strip(messages: object) -> None:
        for m in messages:  # type: ignore[attr-defined]
            for f in m.field:
                f.ClearField("json_name")
            strip(m.nested_type)

    strip(fd.message_type)  # type: ignore[attr-defined]


def test_committed_modules_match_the_protos(tmp_path: Path) -> None:
    # Compare descriptors rather than text, so a newer protoc on another machine
    # does not fail the check while a changed .proto without regeneration does.
    from google.protobuf import descriptor_pb2

    expected = _descriptor_set(tmp_path)
    for proto, serialized in expected.items():
        module = importlib.import_module(_module_name(proto, "_pb2"))
        got = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        want = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        _strip_json_names(got)
        _strip_json_names(want)
        assert got == want, f"{proto}: run `python tools/gen_protos.py`"


def test_every_service_has_grpc_stubs() -> None:
    for proto in gen_protos.service_files():
        module = importlib.import_module(_module_name(proto, "_pb2_grpc"))
        pb2 = importlib.import_module(_module_name(proto, "_pb2"))
        for service in pb2.DESCRIPTOR.services_by_name:
            assert hasattr(module, f"{service}Stub"), proto
            assert hasattr(module, f"{service}Servicer"), proto


def test_no_stale_generated_modules() -> None:
    wanted = {_module_name(p, "_pb2") for p in gen_protos.proto_files()}
    wanted |= {_module_name(p, "_pb2_grpc") for p in gen_protos.service_files()}
    found = set()
    for path in gen_protos.GEN_ROOT.rglob("*_pb2*.py"):
        rel = path.relative_to(gen_protos.GEN_ROOT).with_suffix("")
        found.add("skiff.api.gen." + ".".join(rel.parts))
    assert found == wanted


# containerd 1.6's numbering for fields that are easy to get wrong (gaps, odd packages)
_PINNED = {
    "containerd.services.images.v1.Image": {"created_at": 7, "updated_at": 8, "target": 3},
    "containerd.services.tasks.v1.CreateTaskRequest": {
        "rootfs": 3,
        "runtime_path": 10,
        "options": 9,
    },
    "containerd.services.diff.v1.DiffResponse": {"diff": 3},
    "containerd.services.leases.v1.CreateRequest": {"labels": 3},
    "containerd.types.Descriptor": {"annotations": 5, "size": 3},
    "containerd.services.content.v1.WriteContentRequest": {"labels": 7, "data": 6, "offset": 5},
    "containerd.services.introspection.v1.Plugin": {"init_err": 7},
    "containerd.services.containers.v1.Container": {"extensions": 10, "snapshot_key": 7},
    "containerd.services.images.v1.ImageCreate": {"labels": 2},
    "containerd.events.ContainerUpdate": {"snapshot_key": 4},
}


def test_pinned_field_numbers() -> None:
    from google.protobuf import descriptor_pool

    importlib.import_module("skiff.api.gen.containerd.events.image_pb2")
    for proto in gen_protos.proto_files():
        importlib.import_module(_module_name(proto, "_pb2"))
    pool = descriptor_pool.Default()
    for name, fields in _PINNED.items():
        d = pool.FindMessageTypeByName(name)
        got = {f: d.fields_by_name[f].number for f in fields}
        assert got == fields, name


def test_write_actions_and_snapshot_kinds() -> None:
    from skiff.api.gen.containerd.services.content.v1 import content_pb2
    from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2

    assert (content_pb2.STAT, content_pb2.WRITE, content_pb2.COMMIT) == (0, 1, 2)
    assert (snapshots_pb2.VIEW, snapshots_pb2.ACTIVE, snapshots_pb2.COMMITTED) == (1, 2, 3)
