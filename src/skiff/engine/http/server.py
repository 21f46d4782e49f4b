"""skiffd's HTTP/1.1 server for the Docker Engine API, on asyncio streams.

Written for what the API needs and general frameworks make awkward: the
connection hijack of attach and exec (101 UPGRADED, then raw bytes both
ways with half-close), long chunked streams (events, logs, pull progress),
request bodies streamed straight into the daemon (load, import, build),
and a keep-alive connection per docker CLI. Handlers are plain coroutines
taking a Request and returning a Response; errors become Docker's JSON
`{"message": ...}` with the status the error class carries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import InvalidArgument, SkiffError

log = logging.getLogger("skiffd.http")

API_VERSION = "1.45"
MIN_API_VERSION = "1.24"
MAX_HEADER_BYTES = 64 * 1024
MAX_JSON_BODY = 16 * 1024 * 1024

_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(/.*)$")


class HTTPError(SkiffError):
    """An error with an explicit HTTP status (for the few without a skiff class)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.http_status = status


class BodyReader:
    """The request body as a stream (Content-Length or chunked)."""

    def __init__(self, reader: asyncio.StreamReader, length: int | None, chunked: bool):
        self._reader = reader
        self._remaining = length if length is not None else 0
        self._chunked = chunked
        self._chunk_left = 0
        self._done = not chunked and not self._remaining

    async def read(self, n: int = 65536) -> bytes:
        """Up to n bytes; b'' at the end of the body."""
        if self._done:
            return b""
        if not self._chunked:
            data = await self._reader.read(min(n, self._remaining))
            if not data:
                raise InvalidArgument("unexpected end of request body")
            self._remaining -= len(data)
            if self._remaining == 0:
                self._done = True
            return data
        if self._chunk_left == 0:
            line = await self._reader.readline()
            try:
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            except ValueError:
                raise InvalidArgument("malformed chunked request body")
            if size == 0:
                # trailers until an empty line
                while (await self._reader.readline()).strip():
                    pass
                self._done = True
                return b""
            self._chunk_left = size
        data = await self._reader.read(min(n, self._chunk_left))
        if not data:
            raise InvalidArgument("unexpected end of request body")
        self._chunk_left -= len(data)
        if self._chunk_left == 0:
            await self._reader.readexactly(2)
        return data

    async def read_all(self, limit: int = MAX_JSON_BODY) -> bytes:
        parts: list[bytes] = []
        size = 0
        while chunk := await self.read():
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"request body larger than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def drain(self) -> None:
        while await self.read():
            pass

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while chunk := await self.read():
            yield chunk


@dataclass
class Request:
    method: str
    path: str  # without the /vX.Y prefix
    version: str  # the API version asked for (or the default)
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: BodyReader
    params: dict[str, str] = field(default_factory=dict)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def q_bool(self, name: str, default: bool = False) -> bool:
        value = self.q(name)
        if value is None:
            return default
        return value.lower() not in ("", "0", "false", "no")

    def q_int(self, name: str, default: int | None = None) -> int | None:
        value = self.q(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(f"invalid value for {name}: {value!r}")

    def q_json(self, name: str) -> Any:
        value = self.q(name)
        if not value:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidArgument(f"invalid JSON in {name}: {e}")

    async def json(self, required: bool = False) -> Any:
        raw = await self.body.read_all()
        if not raw.strip():
            if required:
                raise InvalidArgument("request body is empty")
            return None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidArgument(f"invalid JSON: {e}")

    def version_at_least(self, version: str) -> bool:
        return _vtuple(self.version) >= _vtuple(version)


def _vtuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in v.split("."))
    except ValueError:
        return (0,)


class Response:
    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        if content_type:
            self.headers["Content-Type"] = content_type


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(status, (json.dumps(obj) + "\n").encode(), headers, "application/json")


def no_content(status: int = 204) -> Response:
    return Response(status)


class StreamResponse(Response):
    """A chunked body from an async iterator of byte strings."""

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status, b"", headers, content_type)
        self.chunks = chunks


class HijackResponse(Response):
    """Take over the connection: after the status line the handler owns the socket."""

    def __init__(
        self,
        run: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        upgrade: bool,
        content_type: str = "application/vnd.docker.raw-stream",
    ):
        super().__init__(101 if upgrade else 200, b"", None, content_type)
        self.run = run
        self.upgrade = upgrade


Handler = Callable[[Request], Awaitable[Response]]

_REASONS = {
    101: "UPGRADED",
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class Router:
    """Routes like "/containers/{id}/json" to handlers, per method."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$"
        if pattern.endswith("{name}") and pattern.startswith("/images/"):
            # image names contain slashes: /images/{name} takes the rest of the path
            regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>.+)", pattern) + "$"
        self._routes.append((method, re.compile(regex), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return register

    def match(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for m, regex, handler in self._routes:
            found = regex.match(path)
            if found:
                if m == method or (method == "HEAD" and m == "GET"):
                    params = {k: urllib.parse.unquote(v) for k, v in found.groupdict().items()}
                    return handler, params
                allowed = True
        if allowed:
            raise HTTPError(405, "method not allowed")
        raise HTTPError(404, "page not found")


def error_body(message: str) -> bytes:
    return (json.dumps({"message": message}) + "\n").encode()


class Server:
    """Serves a Router on any number of asyncio listeners."""

    def __init__(self, router: Router, server_header: str = "skiffd"):
        self.router = router
        self.server_header = server_header
        self.servers: list[asyncio.AbstractServer] = []
        self.connections: set[asyncio.Task[None]] = set()

    async def serve_sock(self, sock: socket.socket, ssl: Any = None) -> asyncio.AbstractServer:
        if sock.family == socket.AF_UNIX:
            server = await asyncio.start_unix_server(
                self._connection, sock=sock, limit=MAX_HEADER_BYTES
            )
        else:
            server = await asyncio.start_server(
                self._connection, sock=sock, ssl=ssl, limit=MAX_HEADER_BYTES
            )
        self.servers.append(server)
        return server

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for task in list(self.connections):
            task.cancel()
        for server in self.servers:
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            while True:
                keep = await self._one_request(reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:  # a broken client must never take the daemon down
            log.exception("connection failed")
        finally:
            self.connections.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError:
            await self._send_simple(writer, 431, "request headers too large")
            return False
        lines = head.decode("latin-1").split("\r\n")
        try:
            method, target, proto = lines[0].split(" ", 2)
        except ValueError:
            await self._send_simple(writer, 400, "malformed request line")
            return False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        try:
            length = int(headers["content-length"]) if "content-length" in headers else None
        except ValueError:
            await self._send_simple(writer, 400, "malformed Content-Length")
            return False
        body = BodyReader(reader, length, chunked)
        keep_alive = proto == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        parsed = urllib.parse.urlsplit(target)
        path = parsed.path or "/"
        version = API_VERSION
        found = _VERSION_PREFIX.match(path)
        if found:
            version, path = found.group(1), found.group(2)
        if len(path) > 1:
            path = path.rstrip("/")
        request = Request(
            method=method.upper(),
            path=path,
            version=version,
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers=headers,
            body=body,
            reader=reader,
            writer=writer,
        )
        try:
            if _vtuple(version) < _vtuple(MIN_API_VERSION):
                raise HTTPError(
                    400,
                    f"client version {version} is too old. Minimum supported "
                    f"API version is {MIN_API_VERSION}, please upgrade your client "
                    "to a newer version",
                )
            if _vtuple(version) > _vtuple(API_VERSION):
                raise HTTPError(
                    400,
                    f"client version {version} is too new. Maximum supported "
                    f"API version is {API_VERSION}",
                )
            handler, params = self.router.match(request.method, path)
            request.params = params
            response = await handler(request)
        except SkiffError as e:
            response = Response(e.http_status, error_body(str(e)), None, "application/json")
        except Exception as e:  # the API edge: one JSON error, never a traceback
            log.exception("handler failed: %s %s", method, path)
            response = Response(
                500, error_body(f"{type(e).__name__}: {e}"), None, "application/json"
            )
        if isinstance(response, HijackResponse):
            await self._hijack(request, response, writer)
            return False
        # whatever the handler left unread must go before the next request
        try:
            await body.drain()
        except (InvalidArgument, asyncio.IncompleteReadError):
            keep_alive = False
        if isinstance(response, StreamResponse):
            await self._stream(request, response, writer)
            return keep_alive
        await self._send(request, response, writer, keep_alive)
        return keep_alive

    def _head(self, status: int, headers: dict[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        base = {
            "Api-Version": API_VERSION,
            "Docker-Experimental": "false",
            "Ostype": "linux",
            "Server": self.server_header,
        }
        base.update(headers)
        lines += [f"{k}: {v}" for k, v in base.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _send(
        self, request: Request, response: Response, writer: asyncio.StreamWriter, keep_alive: bool
    ) -> None:
        headers = dict(response.headers)
        if response.status not in (204, 304):
            headers["Content-Length"] = str(len(response.body))
        if not keep_alive:
            headers["Connection"] = "close"
        writer.write(self._head(response.status, headers))
        if request.method != "HEAD" and response.status not in (204, 304):
            writer.write(response.body)
        await writer.drain()

    async def _send_simple(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        body = error_body(message)
        writer.write(
            self._head(
                status,
                {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(body)),
                    "Connection": "close",
                },
            )
            + body
        )
        await writer.drain()

    async def _stream(
        self, request: Request, response: StreamResponse, writer: asyncio.StreamWriter
    ) -> None:
        headers = dict(response.headers)
        headers["Transfer-Encoding"] = "chunked"
        writer.write(self._head(response.status, headers))
        await writer.drain()
        try:
            async for chunk in response.chunks:
                if not chunk:
                    continue
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        finally:
            aclose = getattr(response.chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _hijack(
        self, request: Request, response: HijackResponse, writer: asyncio.StreamWriter
    ) -> None:
        headers = {
            "Content-Type": response.headers.get(
                "Content-Type", "application/vnd.docker.raw-stream"
            )
        }
        if response.upgrade:
            headers["Connection"] = "Upgrade"
            headers["Upgrade"] = request.headers.get("upgrade", "tcp")
        writer.write(self._head(response.status, headers))
        await writer.drain()
        assert request.reader is not None
        await response.run(request.reader, writer)


def wants_upgrade(request: Request) -> bool:
    return "upgrade" in request.headers.get("connection", "").lower()
