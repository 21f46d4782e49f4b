"""Units of skiff.containerd.client.lean that need no daemon: its hand-declared
messages against the generated modules (both directions, every field set),
its HPACK reader against the hpack package's encoder, the status mapping
against _grpc's, and that `skiff-ctr run` imports neither grpc nor protobuf.
The lean client against real daemons is tests/integration/ctr."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import grpc
import hpack
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from skiff import errors
from skiff.api.gen.containerd.services.containers.v1 import containers_pb2
from skiff.api.gen.containerd.services.content.v1 import content_pb2
from skiff.api.gen.containerd.services.images.v1 import images_pb2
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2
from skiff.api.gen.containerd.services.tasks.v1 import tasks_pb2
from skiff.api.gen.containerd.types import descriptor_pb2, mount_pb2
from skiff.containerd.client import _grpc, lean
from skiff.ttrpc.protobuf import Any_, Timestamp

TS = timestamp_pb2.Timestamp(seconds=1700000000, nanos=5)
MOUNT = mount_pb2.Mount(type="overlay", source="o", target="/t", options=["a", "b"])


def _same(ours: Any, theirs: Any) -> None:
    """Our encoding parses to their message and theirs to ours, byte for byte."""
    assert type(theirs).FromString(ours.encode()) == theirs
    assert type(ours).decode(theirs.SerializeToString()).encode() == ours.encode()


def test_container_messages_match_the_generated_ones() -> None:
    theirs = containers_pb2.Container(
        id="c",
        labels={"a": "1"},
        image="img",
        runtime=containers_pb2.Container.Runtime(
            name="io.containerd.runc.v2", options=any_pb2.Any(type_url="t", value=b"o")
        ),
        spec=any_pb2.Any(type_url="s", value=b"{}"),
        snapshotter="overlayfs",
        snapshot_key="k",
        created_at=TS,
        updated_at=TS,
        extensions={"e": any_pb2.Any(type_url="x", value=b"y")},
    )
    ours = lean._Container(
        id="c",
        labels=[lean._Label(key="a", value="1")],
        image="img",
        runtime=lean._Runtime(name="io.containerd.runc.v2", options=Any_(type_url="t", value=b"o")),
        spec=Any_(type_url="s", value=b"{}"),
        snapshotter="overlayfs",
        snapshot_key="k",
        created_at=Timestamp(seconds=1700000000, nanos=5),
        updated_at=Timestamp(seconds=1700000000, nanos=5),
        extensions=[lean._AnyEntry(key="e", value=Any_(type_url="x", value=b"y"))],
    )
    _same(ours, theirs)
    _same(
        lean._ContainerMsg(container=ours), containers_pb2.CreateContainerRequest(container=theirs)
    )
    _same(lean._Id(id="c"), containers_pb2.GetContainerRequest(id="c"))
    _same(lean._Id(id="c"), containers_pb2.DeleteContainerRequest(id="c"))
    c = lean._container_out(ours)
    assert (c.id, c.labels, c.spec, c.runtime.options_type, c.extensions) == (
        "c",
        {"a": "1"},
        {},
        "t",
        {"e": b"y"},
    )


def test_image_content_and_snapshot_messages_match() -> None:
    desc = descriptor_pb2.Descriptor(
        media_type="m", digest="sha256:x", size=7, annotations={"k": "v"}
    )
    _same(
        lean._ImageMsg(
            image=lean._Image(
                name="n",
                labels=[lean._Label(key="l", value="1")],
                target=lean._Descriptor(
                    media_type="m",
                    digest="sha256:x",
                    size=7,
                    annotations=[lean._Label(key="k", value="v")],
                ),
                created_at=Timestamp(seconds=1700000000, nanos=5),
            )
        ),
        images_pb2.GetImageResponse(
            image=images_pb2.Image(name="n", labels={"l": "1"}, target=desc, created_at=TS)
        ),
    )
    _same(lean._Id(id="n"), images_pb2.GetImageRequest(name="n"))
    _same(lean._Id(id="sha256:x"), content_pb2.InfoRequest(digest="sha256:x"))
    _same(
        lean._ContentInfoMsg(
            info=lean._ContentInfo(
                digest="d", size=3, labels=[lean._Label(key="a", value="b")], updated_at=None
            )
        ),
        content_pb2.InfoResponse(info=content_pb2.Info(digest="d", size=3, labels={"a": "b"})),
    )
    _same(
        lean._ReadContentRequest(digest="d", offset=1, size=2),
        content_pb2.ReadContentRequest(digest="d", offset=1, size=2),
    )
    _same(
        lean._ReadContentResponse(offset=4, data=b"xy"),
        content_pb2.ReadContentResponse(offset=4, data=b"xy"),
    )
    _same(
        lean._SnapshotKey(
            snapshotter="s", key="k", parent="p", labels=[lean._Label(key="a", value="b")]
        ),
        snapshots_pb2.PrepareSnapshotRequest(
            snapshotter="s", key="k", parent="p", labels={"a": "b"}
        ),
    )
    for cls in (
        snapshots_pb2.StatSnapshotRequest,
        snapshots_pb2.MountsRequest,
        snapshots_pb2.RemoveSnapshotRequest,
    ):
        _same(lean._SnapshotKey(snapshotter="s", key="k"), cls(snapshotter="s", key="k"))
    _same(
        lean._SnapshotInfoMsg(
            info=lean._SnapshotInfo(
                name="n", parent="p", kind=3, labels=[lean._Label(key="a", value="b")]
            )
        ),
        snapshots_pb2.StatSnapshotResponse(
            info=snapshots_pb2.Info(name="n", parent="p", kind=3, labels={"a": "b"})
        ),
    )
    ours_mount = lean._Mount(type="overlay", source="o", target="/t", options=["a", "b"])
    _same(lean._Mounts(mounts=[ours_mount]), snapshots_pb2.MountsResponse(mounts=[MOUNT]))


def test_task_messages_match() -> None:
    _same(
        lean._CreateTaskRequest(
            container_id="c",
            rootfs=[lean._Mount(type="overlay", source="o", target="/t", options=["a", "b"])],
            stdin="i",
            stdout="o",
            stderr="e",
            terminal=True,
            options=Any_(type_url="t", value=b"v"),
            runtime_path="/r",
        ),
        tasks_pb2.CreateTaskRequest(
            container_id="c",
            rootfs=[MOUNT],
            stdin="i",
            stdout="o",
            stderr="e",
            terminal=True,
            options=any_pb2.Any(type_url="t", value=b"v"),
            runtime_path="/r",
        ),
    )
    _same(
        lean._CreateTaskResponse(container_id="c", pid=42),
        tasks_pb2.CreateTaskResponse(container_id="c", pid=42),
    )
    ref = lean._ProcessRef(container_id="c", exec_id="e")
    _same(ref, tasks_pb2.StartRequest(container_id="c", exec_id="e"))
    _same(ref, tasks_pb2.WaitRequest(container_id="c", exec_id="e"))
    _same(
        lean._ProcessRef(container_id="c", exec_id="e", flag3=1),
        tasks_pb2.CloseIORequest(container_id="c", exec_id="e", stdin=True),
    )
    _same(
        lean._ProcessRef(container_id="c", exec_id="e", flag3=9, flag4=1),
        tasks_pb2.KillRequest(container_id="c", exec_id="e", signal=9, all=True),
    )
    _same(
        lean._ProcessRef(container_id="c", flag3=80, flag4=24),
        tasks_pb2.ResizePtyRequest(container_id="c", width=80, height=24),
    )
    _same(lean._ProcessRef(container_id="c"), tasks_pb2.DeleteTaskRequest(container_id="c"))
    _same(lean._Pid(pid=7), tasks_pb2.StartResponse(pid=7))
    _same(
        lean._WaitResponse(exit_status=3, exited_at=Timestamp(seconds=1700000000, nanos=5)),
        tasks_pb2.WaitResponse(exit_status=3, exited_at=TS),
    )
    _same(
        lean._DeleteResponse(id="c", pid=7, exit_status=3, exited_at=Timestamp(seconds=1, nanos=2)),
        tasks_pb2.DeleteResponse(
            id="c", pid=7, exit_status=3, exited_at=timestamp_pb2.Timestamp(seconds=1, nanos=2)
        ),
    )


def test_hpack_reader_decodes_what_hpack_encodes() -> None:
    """Huffman strings, the dynamic table across blocks, long values, and a
    table size update: what the h2 library (our server) and Go's (containerd's)
    encoders send."""
    enc = hpack.Encoder()
    dec = lean.HpackDecoder()
    blocks = [
        [(":status", "200"), ("content-type", "application/grpc")],
        [("grpc-status", "5"), ("grpc-message", 'container "x": not found')],
        [(":status", "200"), ("content-type", "application/grpc"), ("x-long", "v" * 300)],
        [("grpc-status", "0"), ("grpc-message", "100% ok")],
    ]
    for headers in blocks:
        for huffman in (True, False):
            assert dec.decode(enc.encode(headers, huffman=huffman)) == headers
    enc.header_table_size = 64  # forces a size update and evictions
    headers = [("grpc-status", "13"), ("grpc-message", "boom")]
    assert dec.decode(enc.encode(headers)) == headers
    assert dec.max_size == 64 and dec.size <= 64
    # and our own literals are what an HPACK decoder reads back
    ours = lean._literal("containerd-namespace", "n" * 200)
    assert hpack.Decoder().decode(ours) == [("containerd-namespace", "n" * 200)]


def test_status_errors_as_the_grpc_client_words_them() -> None:
    class _Err(grpc.RpcError):
        def __init__(self, code: grpc.StatusCode, details: str) -> None:
            self._code, self._details = code, details

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

    for code in grpc.StatusCode:
        if code == grpc.StatusCode.OK or code == grpc.StatusCode.UNAVAILABLE:
            continue
        for detail in ("it went wrong", ""):
            want = _grpc.error_from_rpc(_Err(code, detail))
            got = lean.status_error(code.value[0], detail)
            assert (type(got), str(got), got.grpc_code) == (type(want), str(want), want.grpc_code)
    assert lean._percent_decode("50%25 done%0A") == "50% done\n"
    assert lean._percent_decode("bad %zz") == "bad %zz"


def test_a_dead_socket_is_unavailable(tmp_path: Any) -> None:
    client = lean.LeanClient(str(tmp_path / "none.sock"), "default")
    with pytest.raises(errors.Unavailable, match="connection error"):
        client.get_container("x")


def test_a_silent_server_is_a_deadline(tmp_path: Any) -> None:
    """--timeout against a socket that accepts and never answers: the
    DEADLINE_EXCEEDED error the grpcio client gives, not a hang."""
    import socket

    path = str(tmp_path / "silent.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(4)
        client = lean.LeanClient(path, "default", timeout=0.3)
        with pytest.raises(errors.SkiffError) as got:
            client.get_container("x")
        assert (got.value.grpc_code, str(got.value)) == (4, "Deadline Exceeded")
        client.close()


def test_run_imports_neither_grpc_nor_protobuf_nor_dataclasses() -> None:
    code = (
        "import sys\n"
        "from skiff.containerd import ctr\n"
        "sys.argv = ['skiff-ctr', '-a', '/nonexistent.sock', 'run', '--rm', 'img', 'id', 'true']\n"
        "rc = ctr.main(sys.argv[1:])\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('grpc', 'google')]\n"
        "bad += [m for m in sys.modules if m.startswith('skiff.api.gen')]\n"
        # nor the dataclass modules that cost it 20-30 ms (quick_image reads the JSON)
        "bad += [m for m in ('dataclasses', 'skiff.oci.image', 'skiff.containerd.client.types',"
        " 'typing', 'argparse')"
        " if m in sys.modules]\n"
        "print(rc, bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "1 []"


def test_quick_chain_id_is_containerds() -> None:
    from skiff.containerd.client.containers import top_chain_id
    from skiff.oci.digest import Digest
    from skiff.oci.image import chain_ids

    diff_ids = [f"sha256:{c * 64}" for c in "abc"]
    for n in range(4):
        want = str(chain_ids([Digest(d) for d in diff_ids[:n]])[-1]) if n else ""
        assert top_chain_id(diff_ids[:n]) == want


def test_quick_image_process_defaults_as_the_oci_parser_reads_them() -> None:
    from skiff.containerd.client.containers import RunImage
    from skiff.oci.image import ContainerConfig

    for config in (
        {},
        {"Env": None, "Cmd": None, "Entrypoint": None, "User": None, "WorkingDir": None},
        {"Env": ["A=1"], "Entrypoint": ["/bin/sh"], "Cmd": ["-c", "x"], "User": "1:2"},
        {"WorkingDir": "/w", "Cmd": ["sh"]},
    ):
        ours, theirs = RunImage("n", "c", config), ContainerConfig.from_json(config)
        for attr in ("env", "entrypoint", "cmd", "working_dir", "user"):
            assert getattr(ours, attr) == getattr(theirs, attr), (attr, config)


RUN_LINES = [
    ["run", "img", "id"],
    ["run", "--rm", "img", "id", "true"],
    ["-a", "/s.sock", "-n", "ns", "run", "--rm", "--fifo-dir", "/f", "img", "id", "sh", "-c", "x"],
    ["--address=/s", "--namespace=n", "--timeout", "2.5", "--debug", "run", "i", "c"],
    ["run", "--env", "A=1", "--env=B=2", "--label", "l=1", "--mount", "type=bind,src=/a,dst=/b",
     "-t", "-d", "-u", "1:2", "--user=3", "--cwd", "/w", "--hostname", "h", "--net-host",
     "--privileged", "--read-only", "--runtime", "io.containerd.skiff.v1", "--runc-binary", "r",
     "--snapshotter", "native", "--null-io", "--pid-file", "/p", "--env-file", "/e", "i", "c",
     "echo", "--rm", "-t"],
    ["run", "--detach", "--tty", "img", "id", "-"],
]  # fmt: skip
FALLBACK_LINES = [
    ["run", "--fifo", "/f", "img", "id"],  # an abbreviation
    ["run", "--rm=1", "img", "id"],
    ["run", "--help"],
    ["run", "img"],
    ["run", "img", "--rm", "id"],
    ["run", "img", "id", "-c", "x"],
    ["run", "--cwd", "-x", "img", "id"],
    ["-a=/s", "run", "img", "id"],
    ["--timeout", "soon", "run", "img", "id"],
    ["run", "-td", "img", "id"],
    ["run", "--", "img", "id"],
    ["images", "ls"],
]


@pytest.mark.parametrize("argv", RUN_LINES)
def test_fast_run_parse_is_argparses(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from skiff.containerd import ctr

    monkeypatch.setenv("CONTAINERD_SNAPSHOTTER", "overlayfs")
    fast = ctr.fast_run_args(argv)
    slow = ctr.build_parser("run").parse_args(argv)
    assert fast is not None
    want = {k: v for k, v in vars(slow).items() if k != "run"}
    assert {k: v for k, v in vars(fast).items() if k != "run"} == want
    assert fast.run.__qualname__ == slow.run.__qualname__


@pytest.mark.parametrize("argv", FALLBACK_LINES)
def test_fast_run_parse_leaves_the_rest_to_argparse(argv: list[str]) -> None:
    from skiff.containerd import ctr

    assert ctr.fast_run_args(argv) is None
