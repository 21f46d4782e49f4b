"""skiff-containerd's own gRPC server (server/h2server.py) against grpcio's
client over a real unix socket: unary, server-streaming beyond the flow
control window, bidi streaming, metadata, statuses, cancellation, bad input.
Debian's ctr checks it too (tests/integration/supervisor with
SKIFF_TEST_GRPC_SERVER=h2)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.content.v1 import content_pb2 as cpb
from skiff.api.gen.containerd.services.content.v1 import content_pb2_grpc as crpc
from skiff.api.gen.containerd.services.events.v1 import events_pb2 as epb
from skiff.api.gen.containerd.services.events.v1 import events_pb2_grpc as erpc
from skiff.api.gen.containerd.services.version.v1 import version_pb2 as vpb
from skiff.api.gen.containerd.services.version.v1 import version_pb2_grpc as vrpc
from skiff.containerd.server.common import streaming, unary
from skiff.containerd.server.h2server import H2Server
from skiff.errors import NotFound

CHUNK = 1 << 20


class Fake:
    """Adapters in the shape the real ones have (common.py's wrappers)."""

    def __init__(self) -> None:
        self.subscription_ended = threading.Event()

    @unary
    def Version(self, req: Any, ctx: Any) -> Any:
        md = dict(ctx.invocation_metadata())
        return vpb.VersionResponse(version="v", revision=md.get("containerd-namespace", ""))

    @unary
    def Info(self, req: Any, ctx: Any) -> Any:
        raise NotFound(f"content digest {req.digest}: not found — é")

    @streaming
    def Read(self, req: Any, ctx: Any) -> Iterator[Any]:
        for i in range(req.size // CHUNK):
            yield cpb.ReadContentResponse(offset=i * CHUNK, data=bytes([i % 256]) * CHUNK)

    @streaming
    def Write(self, requests: Iterator[Any], ctx: Any) -> Iterator[Any]:
        offset = 0
        for r in requests:
            offset += len(r.data)
            yield cpb.WriteContentResponse(action=r.action, offset=offset)

    @streaming
    def Subscribe(self, req: Any, ctx: Any) -> Iterator[Any]:
        try:
            while ctx.is_active():
                yield epb.Envelope(topic="/tick", namespace="default")
                time.sleep(0.05)
        finally:
            self.subscription_ended.set()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Fake]]:
    path = str(tmp_path / "g.sock")
    server = H2Server(4, 4 << 20, 16 << 20)
    fake = Fake()
    server.add_service(vpb.DESCRIPTOR.services_by_name["Version"], fake)
    server.add_service(cpb.DESCRIPTOR.services_by_name["Content"], fake)
    server.add_service(epb.DESCRIPTOR.services_by_name["Events"], fake)
    server.add_insecure_port("unix:" + path)
    server.start()
    try:
        yield path, fake
    finally:
        assert server.stop(0.5).wait(5)


def _channel(path: str) -> grpc.Channel:
    return grpc.insecure_channel(
        "unix:" + path, options=[("grpc.max_receive_message_length", 32 << 20)]
    )


def test_unary_and_metadata(served: tuple[str, Fake]) -> None:
    path, _ = served
    with _channel(path) as ch:
        stub = vrpc.VersionStub(ch)
        r = stub.Version(empty_pb2.Empty(), metadata=[("containerd-namespace", "ns1")], timeout=5)
        assert (r.version, r.revision) == ("v", "ns1")
        # many calls side by side on one connection
        threads = [
            threading.Thread(target=stub.Version, args=(empty_pb2.Empty(),), kwargs={"timeout": 5})
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def test_error_status_and_message(served: tuple[str, Fake]) -> None:
    path, _ = served
    with _channel(path) as ch, pytest.raises(grpc.RpcError) as info:
        crpc.ContentStub(ch).Info(cpb.InfoRequest(digest="sha256:x"), timeout=5)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert info.value.details() == "content digest sha256:x: not found — é"


def test_unimplemented_and_malformed(served: tuple[str, Fake]) -> None:
    path, _ = served
    with _channel(path) as ch:
        # a method of a served service the adapter lacks
        with pytest.raises(grpc.RpcError) as info:
            crpc.ContentStub(ch).Delete(cpb.DeleteContentRequest(digest="x"), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        raw = ch.unary_unary("/nosuch.Service/Call")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        bad = ch.unary_unary("/containerd.services.content.v1.Content/Info")
        with pytest.raises(grpc.RpcError) as info:
            bad(b"\xff\xff\xff\xff\x0f", timeout=5)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert vrpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=5).version == "v"


def test_server_stream_beyond_the_window(served: tuple[str, Fake]) -> None:
    """12 MiB: more than the client's flow-control window, so the server
    must wait for WINDOW_UPDATEs."""
    path, _ = served
    with _channel(path) as ch:
        got = list(crpc.ContentStub(ch).Read(cpb.ReadContentRequest(size=12 * CHUNK), timeout=30))
    assert [r.offset for r in got] == [i * CHUNK for i in range(12)]
    assert all(r.data == bytes([i]) * CHUNK for i, r in enumerate(got))


def test_bidi_stream(served: tuple[str, Fake]) -> None:
    path, _ = served
    reqs = [cpb.WriteContentRequest(action=cpb.WRITE, data=b"x" * CHUNK) for _ in range(6)]
    with _channel(path) as ch:
        out = list(crpc.ContentStub(ch).Write(iter(reqs), timeout=30))
    assert [r.offset for r in out] == [(i + 1) * CHUNK for i in range(6)]


def test_oversized_request(tmp_path: Path) -> None:
    path = str(tmp_path / "g.sock")
    server = H2Server(4, 1024, 1024)
    server.add_service(cpb.DESCRIPTOR.services_by_name["Content"], Fake())
    server.add_insecure_port("unix:" + path)
    server.start()
    try:
        with _channel(path) as ch, pytest.raises(grpc.RpcError) as info:
            list(
                crpc.ContentStub(ch).Write(
                    iter([cpb.WriteContentRequest(data=b"x" * 4096)]), timeout=5
                )
            )
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(0).wait(5)


def test_cancelled_stream_ends_the_handler(served: tuple[str, Fake]) -> None:
    path, fake = served
    with _channel(path) as ch:
        call = erpc.EventsStub(ch).Subscribe(epb.SubscribeRequest(), timeout=30)
        assert next(call).topic == "/tick"
        call.cancel()
        assert fake.subscription_ended.wait(5)
        assert vrpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=5).version == "v"


def test_garbage_connection_leaves_server_up(served: tuple[str, Fake]) -> None:
    path, _ = served
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    # not HTTP/2 at all; a DATA frame on stream 0 (a connection error)
    for junk in (b"GET / HTTP/1.1\r\n\r\n", preface + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"):
        s = socket.socket(socket.AF_UNIX)
        s.connect(path)
        s.sendall(junk)
        s.settimeout(5)
        while s.recv(4096):  # the server closes this connection only
            pass
        s.close()
    # a frame header announcing 16 MiB that never comes: this connection waits
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.sendall(preface + b"\xff" * 64)
    with _channel(path) as ch:
        assert vrpc.VersionStub(ch).Version(empty_pb2.Empty(), timeout=5).version == "v"
    s.close()


def test_health_check(tmp_path: Path) -> None:
    """grpc.health.v1.Health/Check, which dockerd polls, on both servers."""
    from skiff.containerd.server import health
    from skiff.containerd.server.grpcio_server import GrpcioServer

    for cls in (H2Server, GrpcioServer):
        path = str(tmp_path / f"{cls.__name__}.sock")
        server = cls(4, 4 << 20, 4 << 20)
        server.add_service(vpb.DESCRIPTOR.services_by_name["Version"], Fake())
        health.register(server)
        server.add_insecure_port("unix:" + path)
        server.start()
        try:
            with _channel(path) as ch:
                check = ch.unary_unary("/grpc.health.v1.Health/Check")
                assert check(b"", timeout=5) == b"\x08\x01"  # status: SERVING
                name = b"containerd.services.version.v1.Version"
                assert check(b"\x0a" + bytes([len(name)]) + name, timeout=5) == b"\x08\x01"
                with pytest.raises(grpc.RpcError) as info:
                    check(b"\x0a\x02no", timeout=5)
                assert info.value.code() == grpc.StatusCode.NOT_FOUND
        finally:
            server.stop(0).wait(5)


def test_daemon_does_not_load_grpcio() -> None:
    """With the default server the daemon never imports grpcio (about 15 MB
    of RSS); the wiring must keep it that way."""
    import subprocess
    import sys

    code = (
        "import sys; import skiff.containerd.main; "
        "from skiff.containerd.server.grpc import Daemon, _server; "
        "from skiff.containerd.config import DEFAULTS; "
        "_server(DEFAULTS['grpc']); "
        "import skiff.containerd.server.health; "
        "print(sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_many_long_calls_on_one_connection(served: tuple[str, Fake]) -> None:
    """dockerd keeps a Wait open per running container on one connection;
    HTTP/2's stream limit must not cap that at h2's default of 100."""
    path, _ = served
    with _channel(path) as ch:
        stub = erpc.EventsStub(ch)
        started = time.monotonic()
        calls = [stub.Subscribe(epb.SubscribeRequest(), timeout=30) for _ in range(150)]
        try:
            for call in calls:
                assert next(call).topic == "/tick"
            assert time.monotonic() - started < 15
        finally:
            for call in calls:
                call.cancel()


def test_gzip_requests(tmp_path: Path) -> None:
    """Compressed requests are read; one that inflates past the limit is
    refused, not inflated."""
    path = str(tmp_path / "g.sock")
    server = H2Server(4, 64 << 10, 1 << 20)
    server.add_service(cpb.DESCRIPTOR.services_by_name["Content"], Fake())
    server.add_insecure_port("unix:" + path)
    server.start()
    try:
        with grpc.insecure_channel("unix:" + path, compression=grpc.Compression.Gzip) as ch:
            ok = [cpb.WriteContentRequest(data=b"y" * 1000)]
            out = list(crpc.ContentStub(ch).Write(iter(ok), timeout=5))
            assert out[0].offset == 1000
            bomb = [cpb.WriteContentRequest(data=b"\0" * (1 << 20))]  # ~1 kB compressed
            with pytest.raises(grpc.RpcError) as info:
                list(crpc.ContentStub(ch).Write(iter(bomb), timeout=5))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # refused after inflating a bounded amount, not by its (small) length
            assert "decompressed" in str(info.value.details())
    finally:
        server.stop(0).wait(5)
