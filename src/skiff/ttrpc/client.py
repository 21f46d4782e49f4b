"""A unary ttrpc client on a unix socket, safe to share between threads.

Used by skiff-shim to forward events to containerd's ttrpc address, and by the
supervisor (later) to call shims. Calls are multiplexed on one connection by
stream id (odd, increasing by two, as ttrpc clients number them); one reader
thread hands each response to the call waiting for it.
"""

from __future__ import annotations

import socket
import threading

from skiff import errors
from skiff.ttrpc import wire
from skiff.ttrpc.protobuf import Status

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_CODE_TO_ERROR: dict[int, type[errors.SkiffError]] = {
    wire.NOT_FOUND: errors.NotFound,
    wire.ALREADY_EXISTS: errors.AlreadyExists,
    wire.INVALID_ARGUMENT: errors.InvalidArgument,
    wire.FAILED_PRECONDITION: errors.FailedPrecondition,
    wire.UNAVAILABLE: errors.Unavailable,
    wire.UNIMPLEMENTED: errors.NotImplemented_,
    wire.INTERNAL: errors.Internal,
}


def error_from_status(status: Status) -> errors.SkiffError:
    """Map a google.rpc.Status to the matching skiff error, keeping its code."""
    cls = _CODE_TO_ERROR.get(status.code, errors.SkiffError)
    exc = cls(status.message)
    exc.grpc_code = status.code
    return exc


class _Call:
    __slots__ = ("done", "response")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.response: wire.Response | None = None


class Client:
    def __init__(self, path: str, *, timeout: float | None = 10.0) -> None:
        if path.startswith("unix://"):
            path = path[len("unix://") :]
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(path)
        except OSError as exc:
            self._sock.close()
            raise errors.Unavailable(f"ttrpc: connect {path}: {exc.strerror or exc}")
        self._sock.settimeout(None)
        self._lock = threading.Lock()
        self._next_id = 1
        self._pending: dict[int, _Call] = {}
        self._closed = False
        threading.Thread(target=self._read_loop, daemon=True).start()

    def call(
        self,
        service: str,
        method: str,
        payload: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> bytes:
        """Send one request and wait for its response payload; errors raise SkiffError."""
        request = wire.Request(service=service, method=method, payload=payload)
        if metadata:
            request.metadata = [wire.KeyValue(key=k, value=v) for k, v in metadata.items()]
        if timeout is not None:
            request.timeout_nano = int(timeout * 1e9)
        call = _Call()
        with self._lock:
            if self._closed:
                raise errors.Unavailable("ttrpc: client closed")
            stream_id = self._next_id
            self._next_id += 2
            self._pending[stream_id] = call
            try:
                self._sock.sendall(
                    wire.encode_frame(stream_id, wire.TYPE_REQUEST, request.encode())
                )
            except OSError as exc:
                del self._pending[stream_id]
                raise errors.Unavailable(f"ttrpc: send: {exc}")
        if not call.done.wait(timeout):
            with self._lock:
                self._pending.pop(stream_id, None)
            err = errors.SkiffError(f"ttrpc: {service}/{method} timed out")
            err.grpc_code = wire.DEADLINE_EXCEEDED
            raise err
        response = call.response
        if response is None:
            raise errors.Unavailable("ttrpc: connection closed")
        if response.status is not None and response.status.code != wire.OK:
            raise error_from_status(response.status)
        return response.payload

    def close(self) -> None:
        with self._lock:
            self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @property
    def closed(self) -> bool:
        return self._closed

    def _read_loop(self) -> None:
        try:
            while True:
                try:
                    frame = wire.read_frame(self._sock)
                except wire.FrameTooLarge:
                    continue
                if frame is None:
                    return
                stream_id, msg_type, _flags, data = frame
                if msg_type != wire.TYPE_RESPONSE:
                    continue
                with self._lock:
                    call = self._pending.pop(stream_id, None)
                if call is None:
                    continue
                try:
                    call.response = wire.Response.decode(data)
                except errors.SkiffError as exc:
                    call.response = wire.Response(
                        status=Status(code=wire.INTERNAL, message=f"ttrpc: bad response: {exc}")
                    )
                call.done.set()
        except OSError:
            return
        finally:
            with self._lock:
                self._closed = True
                pending = list(self._pending.values())
                self._pending.clear()
            for call in pending:
                call.done.set()
            self._sock.close()
