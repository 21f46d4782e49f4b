"""ttrpc over a real unix socket: round trips, concurrency, errors, malformed frames."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.errors import NotFound, NotImplemented_, SkiffError
from skiff.ttrpc import wire
from skiff.ttrpc.client import Client
from skiff.ttrpc.server import Server, listen_unix

SERVICE = "test.v1.Echo"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    release = threading.Event()

    def echo(payload: bytes, metadata: dict[str, str]) -> bytes:
        return payload + metadata.get("suffix", "").encode()

    def block(payload: bytes, metadata: dict[str, str]) -> bytes:
        release.wait(10)
        return b"released"

    def missing(payload: bytes, metadata: dict[str, str]) -> bytes:
        raise NotFound("no such thing")

    def crash(payload: bytes, metadata: dict[str, str]) -> bytes:
        raise ValueError("boom")

    srv = Server()
    srv.register(
        SERVICE,
        {
            "Echo": echo,
            "Block": block,
            "Missing": missing,
            "Crash": crash,
            "Release": lambda p, m: (release.set(), b"")[1],
        },
    )
    path = str(tmp_path / "t.sock")
    srv.serve_in_thread(listen_unix(path))
    try:
        yield path
    finally:
        release.set()
        srv.close()


def test_round_trip_with_metadata(server: str) -> None:
    client = Client(server)
    try:
        assert client.call(SERVICE, "Echo", b"hello") == b"hello"
        assert client.call(SERVICE, "Echo", b"x", metadata={"suffix": "-y"}) == b"x-y"
    finally:
        client.close()


def test_calls_on_one_connection_run_concurrently(server: str) -> None:
    client = Client(server)
    result: list[bytes] = []
    t = threading.Thread(target=lambda: result.append(client.call(SERVICE, "Block", b"")))
    t.start()
    time.sleep(0.1)
    # a blocked call (like the shim's Wait) must not hold up the others
    assert client.call(SERVICE, "Echo", b"meanwhile", timeout=5) == b"meanwhile"
    client.call(SERVICE, "Release", b"", timeout=5)
    t.join(5)
    assert result == [b"released"]
    client.close()


def test_errors_map_to_status_codes(server: str) -> None:
    client = Client(server)
    with pytest.raises(NotFound, match="no such thing"):
        client.call(SERVICE, "Missing", b"")
    with pytest.raises(SkiffError, match="boom") as info:
        client.call(SERVICE, "Crash", b"")
    assert info.value.grpc_code == wire.UNKNOWN
    with pytest.raises(NotImplemented_, match="service nope"):
        client.call("nope", "X", b"")
    with pytest.raises(NotImplemented_, match="method X"):
        client.call(SERVICE, "X", b"")
    client.close()


def _raw(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(5)
    return s


def _read_response(s: socket.socket) -> tuple[int, wire.Response]:
    frame = wire.read_frame(s)
    assert frame is not None
    stream_id, msg_type, _, data = frame
    assert msg_type == wire.TYPE_RESPONSE
    return stream_id, wire.Response.decode(data)


def test_garbage_request_gets_invalid_argument_and_server_stays_up(server: str) -> None:
    s = _raw(server)
    s.sendall(wire.encode_frame(1, wire.TYPE_REQUEST, b"\x0a\x50abc"))  # truncated field
    stream_id, response = _read_response(s)
    assert stream_id == 1
    assert response.status is not None and response.status.code == wire.INVALID_ARGUMENT
    # the same connection still works
    good = wire.Request(service=SERVICE, method="Echo", payload=b"ok")
    s.sendall(wire.encode_frame(3, wire.TYPE_REQUEST, good.encode()))
    assert _read_response(s) == (3, wire.Response(payload=b"ok"))
    s.close()


def test_oversized_frame_gets_resource_exhausted(server: str) -> None:
    s = _raw(server)
    size = wire.MAX_MESSAGE + 1
    s.sendall(struct.pack(">IIBB", size, 5, wire.TYPE_REQUEST, 0))
    s.sendall(b"\0" * size)
    stream_id, response = _read_response(s)
    assert stream_id == 5
    assert response.status is not None and response.status.code == wire.RESOURCE_EXHAUSTED
    s.close()


def test_torn_frame_closes_only_that_connection(server: str) -> None:
    s = _raw(server)
    s.sendall(struct.pack(">IIBB", 100, 1, wire.TYPE_REQUEST, 0) + b"short")
    s.shutdown(socket.SHUT_WR)
    assert s.recv(1) == b""  # the server hung up
    s.close()
    # unknown frame types are ignored; a new connection is served
    s2 = _raw(server)
    s2.sendall(wire.encode_frame(1, 99, b"whatever"))
    client = Client(server)
    assert client.call(SERVICE, "Echo", b"still up") == b"still up"
    client.close()
    s2.close()


def test_client_reports_closed_connection(tmp_path: Path) -> None:
    path = str(tmp_path / "one.sock")
    listener = listen_unix(path)

    def accept_and_hang_up() -> None:
        conn, _ = listener.accept()
        wire.read_frame(conn)
        conn.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    client = Client(path)
    with pytest.raises(SkiffError, match="closed"):
        client.call(SERVICE, "Echo", b"", timeout=5)
    listener.close()


def test_connect_to_nothing_is_unavailable(tmp_path: Path) -> None:
    from skiff.errors import Unavailable

    with pytest.raises(Unavailable):
        Client(str(tmp_path / "absent.sock"))
