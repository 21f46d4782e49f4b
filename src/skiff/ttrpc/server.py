"""A unary ttrpc server on a unix socket: one thread per connection, one per call.

Used by skiff-shim to serve containerd.task.v2.Task (and later by the
supervisor). Calls on one connection run concurrently because containerd keeps
a single connection per shim and parks a Wait on it while it issues others.
A malformed frame gets an error status (or, if the stream cannot be resynced,
a closed connection); the server itself stays up.
"""

from __future__ import annotations

import socket
import threading

from skiff.errors import SkiffError
from skiff.ttrpc import wire
from skiff.ttrpc.protobuf import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    # A handler takes the request payload and the call's metadata and
    # returns the encoded response message.
    Handler = Callable[[bytes, dict[str, str]], bytes]

# Thread stacks are virtual memory until touched, but keep them small anyway:
# handlers are shallow, and a shim runs a handful of them.
_STACK_SIZE = 512 * 1024


def status_from_exception(exc: BaseException) -> Status:
    if isinstance(exc, SkiffError):
        return Status(code=exc.grpc_code, message=str(exc))
    return Status(code=wire.UNKNOWN, message=f"{type(exc).__name__}: {exc}")


class Server:
    """Dispatches ttrpc requests to handlers registered per service and method."""

    def __init__(self, *, on_error: Callable[[str], None] | None = None) -> None:
        self._methods: dict[tuple[str, str], Handler] = {}
        self._listeners: list[socket.socket] = []
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._on_error = on_error

    def register(self, service: str, methods: Mapping[str, Handler]) -> None:
        for name, handler in methods.items():
            self._methods[(service, name)] = handler

    def serve(self, listener: socket.socket) -> None:
        """Accept connections until close(); each gets its own reader thread."""
        with self._lock:
            self._listeners.append(listener)
        while not self._closed:
            try:
                conn, _ = listener.accept()
            except OSError:
                if self._closed:
                    return
                continue
            with self._lock:
                self._connections.add(conn)
            _start_thread(self._serve_connection, conn)

    def serve_in_thread(self, listener: socket.socket) -> None:
        _start_thread(self.serve, listener)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for sock in self._listeners:
                _shutdown(sock)
            for conn in self._connections:
                _shutdown(conn)

    def _serve_connection(self, conn: socket.socket) -> None:
        write_lock = threading.Lock()
        try:
            while True:
                try:
                    frame = wire.read_frame(conn)
                except wire.FrameTooLarge as exc:
                    self._reply_status(
                        conn, write_lock, exc.stream_id, wire.RESOURCE_EXHAUSTED, str(exc)
                    )
                    continue
                if frame is None:
                    return
                stream_id, msg_type, _flags, data = frame
                if msg_type != wire.TYPE_REQUEST:
                    continue  # responses and stream data are not ours to answer
                _start_thread(self._handle, conn, write_lock, stream_id, data)
        except OSError:
            return  # includes ConnectionError: a peer gone or a torn frame
        finally:
            with self._lock:
                self._connections.discard(conn)
            conn.close()

    def _handle(
        self, conn: socket.socket, write_lock: threading.Lock, stream_id: int, data: bytes
    ) -> None:
        try:
            request = wire.Request.decode(data)
        except SkiffError as exc:
            self._reply_status(
                conn, write_lock, stream_id, wire.INVALID_ARGUMENT, f"ttrpc: bad request: {exc}"
            )
            return
        handler = self._methods.get((request.service, request.method))
        if handler is None:
            known = any(s == request.service for s, _ in self._methods)
            what = f"method {request.method}" if known else f"service {request.service}"
            self._reply_status(conn, write_lock, stream_id, wire.UNIMPLEMENTED, what)
            return
        metadata = {kv.key: kv.value for kv in request.metadata}
        try:
            payload = handler(request.payload, metadata)
            response = wire.Response(payload=payload)
        except Exception as exc:
            status = status_from_exception(exc)
            if self._on_error is not None and not isinstance(exc, SkiffError):
                self._on_error(f"{request.service}.{request.method}: {status.message}")
            response = wire.Response(status=status)
        self._send(conn, write_lock, stream_id, response)

    def _reply_status(
        self,
        conn: socket.socket,
        write_lock: threading.Lock,
        stream_id: int,
        code: int,
        message: str,
    ) -> None:
        self._send(
            conn, write_lock, stream_id, wire.Response(status=Status(code=code, message=message))
        )

    @staticmethod
    def _send(
        conn: socket.socket, write_lock: threading.Lock, stream_id: int, response: wire.Response
    ) -> None:
        frame = wire.encode_frame(stream_id, wire.TYPE_RESPONSE, response.encode())
        try:
            with write_lock:
                conn.sendall(frame)
        except OSError:
            pass  # the caller went away; nothing to tell it


def _start_thread(target: Callable[..., None], *args: object) -> None:
    old = threading.stack_size(_STACK_SIZE)
    try:
        threading.Thread(target=target, args=args, daemon=True).start()
    finally:
        threading.stack_size(old)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def listen_unix(path: str, backlog: int = 64) -> socket.socket:
    """Bind a listening unix socket at path (which must not exist)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except OSError:
        sock.close()
        raise
    return sock
