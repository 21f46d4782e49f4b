"""The gRPC plumbing of the supervisor client: the channel to a unix socket,
the namespace metadata, and the one place gRPC errors become skiff.errors.
"""

from __future__ import annotations

import contextlib
import queue
from collections.abc import Iterator
from typing import Any

import grpc

from skiff import errors

NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"
_MAX_MESSAGE = 16 << 20  # containerd's own limit for a message

_BY_CODE: dict[grpc.StatusCode, type[errors.SkiffError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.NotImplemented_,
    grpc.StatusCode.INTERNAL: errors.Internal,
    grpc.StatusCode.OUT_OF_RANGE: errors.InvalidArgument,
    grpc.StatusCode.DATA_LOSS: errors.Internal,
}


def open_channel(address: str) -> grpc.Channel:
    target = address if address.startswith("unix:") else f"unix:{address}"
    return grpc.insecure_channel(
        target,
        options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
            # a unix socket: no proxy, no DNS
            ("grpc.enable_http_proxy", 0),
        ],
    )


def error_from_rpc(e: grpc.RpcError) -> errors.SkiffError:
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    detail = e.details() if hasattr(e, "details") else str(e)
    cls = _BY_CODE.get(code, errors.SkiffError)
    message = str(detail or code.name.lower())
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in message.lower():
        message = f"connection error: {message}"
    err = cls(message)
    err.grpc_code = code.value[0]  # keep the exact code (UNKNOWN, DEADLINE_EXCEEDED, ...)
    return err


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    """Raise skiff.errors for gRPC failures inside the block."""
    try:
        yield
    except grpc.RpcError as e:
        raise error_from_rpc(e) from None


_END = object()


class BidiStream:
    """A bidirectional stream driven call by call: send one request, read one
    response (the content Write protocol is a strict ping-pong)."""

    def __init__(self, method: Any, metadata: list[tuple[str, str]]) -> None:
        self._requests: queue.Queue[object] = queue.Queue()
        with mapped():
            self._responses = method(iter(self._requests.get, _END), metadata=metadata)

    def call(self, request: Any) -> Any:
        self._requests.put(request)
        with mapped():
            try:
                return next(self._responses)
            except StopIteration:
                raise errors.Internal("stream ended without a response") from None

    def close(self) -> None:
        self._requests.put(_END)
        with contextlib.suppress(grpc.RpcError, StopIteration):
            for _ in self._responses:
                pass
