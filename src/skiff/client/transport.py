"""Byte streams to the daemon and HTTP/1.1 over them, on raw sockets.

The bottom of the client, under api.py (DESIGN.md: skiff CLI -> Engine API).
http.client is avoided on purpose: it imports ssl and email, which costs more
than `skiff version` may spend. Hosts: unix://PATH, tcp://HOST:PORT (TLS when a
TLSConfig is given; ssl is imported only then), ssh://[USER@]HOST[:PORT] (the
ssh binary runs `docker system dial-stdio` on the remote and its stdio is one
end of a socketpair).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

from skiff.client.errors import DaemonUnreachable, error_for

DEFAULT_HOST = "unix:///run/skiff/skiff.sock"
SSH_REMOTE_COMMAND = "docker system dial-stdio"


class TLSConfig:
    """Where the CA, client certificate and key are, and whether to verify the server."""

    __slots__ = ("ca", "cert", "key", "verify")

    def __init__(self, *, ca: str | None = None, cert: str | None = None,
                 key: str | None = None, verify: bool = True) -> None:  # fmt: skip
        self.ca, self.cert, self.key, self.verify = ca, cert, key, verify

    def __repr__(self) -> str:
        return (
            f"TLSConfig(ca={self.ca!r}, cert={self.cert!r}, key={self.key!r}, verify={self.verify})"
        )

    def context(self) -> Any:
        import ssl  # only TLS users pay for ssl

        ctx = ssl.create_default_context(cafile=self.ca)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        return ctx


class Stream:
    """One connection: a socket (maybe TLS) with a buffered reader over it."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen[bytes] | None = None) -> None:
        self.sock = sock
        self.reader: IO[bytes] = sock.makefile("rb")
        self.proc = proc

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except (OSError, NotImplementedError, ValueError):
            pass

    def close(self) -> None:
        try:
            self.reader.close()
        finally:
            self.sock.close()
            if self.proc is not None:
                if self.proc.poll() is None:
                    self.proc.terminate()
                self.proc.wait()


class HostURL:
    """scheme://[user@]host[:port][/path], split without urllib (an import saved)."""

    def __init__(self, host: str) -> None:
        self.scheme, _, rest = host.partition("://")
        self.netloc, slash, path = rest.partition("/")
        self.path = slash + path
        userinfo, at, hostport = self.netloc.rpartition("@")
        self.username = userinfo if at else None
        self.hostname: str | None = hostport
        self.port: int | None = None
        if hostport.startswith("["):
            end = hostport.find("]")
            self.hostname = hostport[1:end]
            tail = hostport[end + 1 :]
            self.port = int(tail[1:]) if tail.startswith(":") and tail[1:].isdigit() else None
        elif ":" in hostport:
            name, _, port = hostport.rpartition(":")
            if port.isdigit():
                self.hostname, self.port = name, int(port)


def connect(host: str, tls: TLSConfig | None = None, timeout: float | None = None) -> Stream:
    """Open a byte stream to the daemon named by host."""
    url = HostURL(host)
    try:
        if url.scheme == "unix":
            path = url.path or url.netloc
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
            return Stream(sock)
        if url.scheme in ("tcp", "http", "https"):
            port = url.port or (2376 if tls else 2375)
            sock = socket.create_connection((url.hostname or "localhost", port), timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock = tls.context().wrap_socket(sock, server_hostname=url.hostname)
            return Stream(sock)
        if url.scheme == "ssh":
            return ssh_stream(url.hostname or "", url.port, url.username)
    except OSError as e:
        raise DaemonUnreachable(host, e.strerror or str(e)) from e
    raise DaemonUnreachable(host, f"unsupported protocol scheme {url.scheme!r}")


def ssh_stream(hostname: str, port: int | None, user: str | None) -> Stream:
    import subprocess

    ours, theirs = socket.socketpair()
    argv = [os.environ.get("SKIFF_SSH", "ssh"), "-T", "-o", "ConnectTimeout=30"]
    if port:
        argv += ["-p", str(port)]
    if user:
        argv += ["-l", user]
    argv += ["--", hostname, os.environ.get("SKIFF_SSH_REMOTE_COMMAND", SSH_REMOTE_COMMAND)]
    proc = subprocess.Popen(
        argv, stdin=theirs.fileno(), stdout=theirs.fileno(), start_new_session=True
    )
    theirs.close()
    return Stream(ours, proc)


class Response:
    """The status line, headers and body of one HTTP response."""

    def __init__(self, stream: Stream, method: str) -> None:
        self.stream = stream
        line = stream.reader.readline(65536)
        if not line:
            raise ConnectionError("the daemon closed the connection")
        parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        self.status = int(parts[1])
        self.reason = parts[2] if len(parts) > 2 else ""
        self.headers: dict[str, str] = {}
        while True:
            h = stream.reader.readline(65536)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self.remaining: int | None = int(length) if length is not None else None
        if method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            self.remaining = 0
            self.chunked = False
        self.chunk_left = 0
        self.done = self.remaining == 0
        self.reusable = self.headers.get("connection", "").lower() != "close" and (
            self.chunked or self.remaining is not None
        )

    def read_some(self, size: int = 65536) -> bytes:
        """Up to size bytes of body, b"" at its end; returns as soon as any arrive."""
        if self.done:
            return b""
        r = self.stream.reader
        if self.chunked:
            if self.chunk_left == 0:
                line = r.readline(1024)
                if not line:
                    self.done = True
                    return b""
                self.chunk_left = int(line.split(b";")[0].strip() or b"0", 16)
                if self.chunk_left == 0:
                    while r.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self.done = True
                    return b""
            data = r.read1(min(size, self.chunk_left))  # type: ignore[attr-defined]
            if not data:
                self.done = True
                return b""
            self.chunk_left -= len(data)
            if self.chunk_left == 0:
                r.readline(16)
            return bytes(data)
        if self.remaining is not None:
            data = r.read1(min(size, self.remaining))  # type: ignore[attr-defined]
            self.remaining -= len(data)
            if not data or self.remaining == 0:
                self.done = True
            return bytes(data)
        data = r.read1(size)  # type: ignore[attr-defined]
        if not data:
            self.done = True
        return bytes(data)

    def read(self) -> bytes:
        parts = []
        while chunk := self.read_some():
            parts.append(chunk)
        return b"".join(parts)

    def iter_bytes(self) -> Iterator[bytes]:
        while chunk := self.read_some():
            yield chunk

    def iter_lines(self) -> Iterator[bytes]:
        buf = b""
        for chunk in self.iter_bytes():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield line
        if buf.strip():
            yield buf

    def raise_for_status(self) -> None:
        if self.status < 400:
            return
        body = self.read()
        message = body.decode("utf-8", "replace").strip()
        if self.headers.get("content-type", "").startswith("application/json"):
            import json

            try:
                message = str(json.loads(body).get("message", message))
            except (ValueError, AttributeError):
                pass
        raise error_for(self.status, message or f"{self.status} {self.reason}")


def encode_query(params: dict[str, Any] | None) -> str:
    if not params:
        return ""
    from urllib.parse import urlencode

    items = []
    for k, v in params.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "1" if v else "0"
        items.append((k, str(v)))
    return "?" + urlencode(items) if items else ""


def quote_path(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def request_bytes(
    method: str, target: str, headers: dict[str, str], body_length: int | None
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: api.moby.localhost"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body_length is not None:
        lines.append(f"Content-Length: {body_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
