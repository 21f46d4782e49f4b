"""skiff.client over a real unix socket, served by a small Engine-API-shaped HTTP
server in a thread: version negotiation, keep-alive, chunked and streamed
bodies, error mapping, hijacked streams and stdcopy framing."""

from __future__ import annotations

import json
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from skiff import errors
from skiff.client import APIError, Client, Conflict, DaemonUnreachable, NotFound
from skiff.client.stdcopy import Demuxer, demux, frame
from skiff.client.transport import HostURL

Handler = Callable[[str, str, dict[str, str], bytes], bytes]


class Server:
    """Answers each request with handler(method, target, headers, body) -> raw response."""

    def __init__(self, handler: Handler) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="skiff-unit-"))
        self.path = self.dir / "d.sock"
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        self.handler = handler
        self.connections = 0
        self.requests: list[str] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self.client, args=(conn,), daemon=True).start()

    def client(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        with conn:
            while True:
                line = f.readline()
                if not line:
                    return
                method, target, _ = line.decode().split(" ", 2)
                headers = {}
                while (h := f.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    headers[k.strip().lower()] = v.strip()
                body = b""
                if "content-length" in headers:
                    body = f.read(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    while (size := int(f.readline().strip(), 16)) != 0:
                        body += f.read(size)
                        f.readline()
                    f.readline()
                self.requests.append(f"{method} {target}")
                reply = self.handler(method, target, headers, body)
                if reply == b"HIJACK":
                    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
                                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n" + frame(1, b"early"))  # fmt: skip
                    data = conn.recv(100)
                    conn.sendall(frame(1, b"got " + data) + frame(2, b"err"))
                    conn.shutdown(socket.SHUT_WR)
                    return
                conn.sendall(reply)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
        self.dir.rmdir()


def response(status: int, body: bytes | str | object, ctype: str = "application/json") -> bytes:
    if not isinstance(body, bytes | str):
        body = json.dumps(body)
    data = body.encode() if isinstance(body, str) else body
    reason = {200: "OK", 404: "Not Found", 409: "Conflict", 500: "Internal Server Error"}.get(
        status, "X"
    )
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nApi-Version: 1.40\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data  # fmt: skip


def chunked(*parts: bytes) -> bytes:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    return head + b"".join(b"%x\r\n%b\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


def engine(method: str, target: str, headers: dict[str, str], body: bytes) -> bytes:
    if target == "/_ping":
        return response(200, "OK", "text/plain")
    if target == "/v1.40/version":
        return response(200, {"Version": "x", "ApiVersion": "1.40"})
    if target.startswith("/v1.40/containers/missing/"):
        return response(404, {"message": "No such container: missing"})
    if target.startswith("/v1.40/containers/busy"):
        return response(409, {"message": "container is running"})
    if target == "/v1.40/boom":
        return response(500, "plain text failure", "text/plain")
    if target.startswith("/v1.40/images/create"):
        # one JSON object split across chunks, two in one chunk
        return chunked(b'{"status":"Pull', b'ing"}\r\n{"status":"a"}{"status":"b"}\n')
    if target.startswith("/v1.40/images/load"):
        return response(200, {"stream": f"Loaded {len(body)} bytes"})
    if target.startswith("/v1.40/containers/c1/attach"):
        return b"HIJACK"
    return response(404, {"message": f"page not found: {target}"})


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(engine)
    try:
        yield s
    finally:
        s.close()


def test_negotiates_version_and_reuses_the_connection(server: Server) -> None:
    c = Client(f"unix://{server.path}")
    assert c.version()["Version"] == "x"
    assert c.api_version == "1.40"
    c.version()
    assert server.requests == ["GET /_ping", "GET /v1.40/version", "GET /v1.40/version"]
    assert server.connections == 1
    c.close()


def test_errors_are_mapped_onto_one_hierarchy(server: Server) -> None:
    c = Client(f"unix://{server.path}")
    with pytest.raises(NotFound) as e:
        c.inspect_container("missing")
    assert e.value.message == "No such container: missing" and e.value.status == 404
    assert isinstance(e.value, errors.NotFound) and isinstance(e.value, errors.SkiffError)
    with pytest.raises(Conflict) as e2:
        c.remove_container("busy")
    assert isinstance(e2.value, errors.Conflict)
    with pytest.raises(APIError) as e3:
        c.call("GET", "/boom")
    assert str(e3.value) == "plain text failure" and e3.value.status == 500
    # the connection survives error responses
    assert c.version()["Version"] == "x"
    assert server.connections == 1


def test_unreachable_daemon_names_the_socket(tmp_path: Path) -> None:
    with pytest.raises(DaemonUnreachable) as e:
        Client(f"unix://{tmp_path}/none.sock").version()
    assert f"{tmp_path}/none.sock" in str(e.value)
    assert isinstance(e.value, errors.Unavailable)


def test_streamed_json_and_chunked_upload(server: Server) -> None:
    c = Client(f"unix://{server.path}", version="1.40")
    assert [m["status"] for m in c.pull("busybox", "latest")] == ["Pulling", "a", "b"]
    parts = [b"x" * 70000, b"y" * 5]
    assert list(c.load(iter(parts))) == [{"stream": "Loaded 70005 bytes"}]


def test_hijacked_attach_and_demux(server: Server) -> None:
    c = Client(f"unix://{server.path}", version="1.40")
    h = c.attach("c1", stdin=True)
    assert h.multiplexed
    h.send(b"ping")
    chunks = []
    while data := h.recv():
        chunks.append(data)
    h.close()
    assert list(demux(chunks)) == [(1, b"early"), (1, b"got ping"), (2, b"err")]


def test_demuxer_handles_split_frames() -> None:
    raw = frame(1, b"hello") + frame(2, b"") + frame(1, b"x" * 300)
    d = Demuxer()
    out = []
    for i in range(len(raw)):
        out.extend(d.feed(raw[i : i + 1]))
    assert out == [(1, b"hello"), (2, b""), (1, b"x" * 300)]


@pytest.mark.parametrize(
    ("host", "parts"),
    [("unix:///run/skiff/skiff.sock", ("unix", "/run/skiff/skiff.sock", None, None, None)),
     ("tcp://127.0.0.1:2376", ("tcp", "", "127.0.0.1", 2376, None)),
     ("ssh://me@box:2222", ("ssh", "", "box", 2222, "me")),
     ("tcp://[::1]:2375", ("tcp", "", "::1", 2375, None))],
)  # fmt: skip
def test_host_urls(host: str, parts: tuple[object, ...]) -> None:
    u = HostURL(host)
    assert (
        u.scheme,
        u.path,
        u.hostname if u.scheme != "unix" else None,
        u.port,
        u.username,
    ) == parts
