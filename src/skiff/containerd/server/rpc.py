"""What both gRPC servers of skiff-containerd share (h2server.py, our own
over HTTP/2, and grpcio_server.py): the method table built from a service's
protobuf descriptor and an adapter object, and the status an exception maps
to. Importing this module does not import grpcio."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass

from skiff.errors import SkiffError

log = logging.getLogger("skiff.containerd.server")

# gRPC status codes (the numbers are the wire values)
OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
NOT_FOUND = 5
RESOURCE_EXHAUSTED = 8
INTERNAL = 13
UNIMPLEMENTED = 12
UNAVAILABLE = 14


class RpcStatus(Exception):
    """Ends a call with a status; raised by the adapters' wrappers."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def status_of(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, RpcStatus):
        return exc.code, exc.message
    if isinstance(exc, SkiffError):
        return int(exc.grpc_code), str(exc)
    log.exception("unexpected error", exc_info=exc)
    return UNKNOWN, f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True, slots=True)
class Method:
    path: str  # /package.Service/Name, as on the wire
    name: str
    request: Any  # the request message class
    handler: Callable[[Any, Any], Any]
    client_streaming: bool
    server_streaming: bool


def methods_of(descriptor: ServiceDescriptor, servicer: object) -> list[Method]:
    """Every method of the service; one the adapter does not define answers
    UNIMPLEMENTED, as a generated servicer base class would."""
    out = []
    for m in descriptor.methods:
        handler = getattr(servicer, m.name, None)
        if handler is None:
            handler = _unimplemented(m.name)
        out.append(
            Method(
                path=f"/{descriptor.full_name}/{m.name}",
                name=m.name,
                request=GetMessageClass(m.input_type),
                handler=handler,
                client_streaming=m.client_streaming,
                server_streaming=m.server_streaming,
            )
        )
    return out


def _unimplemented(name: str) -> Callable[[Any, Any], Any]:
    def handler(request: Any, context: Any) -> Any:
        raise RpcStatus(UNIMPLEMENTED, f"method {name} not implemented")

    return handler


class Server(Protocol):
    """What the wiring (grpc.py) needs of a gRPC server."""

    service_names: set[str]

    def add_service(self, descriptor: ServiceDescriptor, servicer: object) -> None: ...

    def add_methods(self, service: str, methods: list[Method]) -> None: ...

    def add_insecure_port(self, address: str) -> int: ...

    def start(self) -> None: ...

    def stop(self, grace: float | None) -> Any: ...
