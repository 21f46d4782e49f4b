"""skiff-containerd's gRPC server on grpcio (`[grpc] server = "grpcio"`):
the method tables of rpc.py turned into grpcio generic handlers, and
RpcStatus turned into `context.abort`."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from skiff.containerd.server.rpc import Method, methods_of, status_of

_CODES = {c.value[0]: c for c in grpc.StatusCode}


def _serialize(message: Any) -> bytes:
    return message.SerializeToString()  # type: ignore[no-any-return]


def _unary(m: Method) -> Any:
    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return m.handler(request, context)
        except Exception as exc:
            code, message = status_of(exc)
        context.abort(_CODES.get(code, grpc.StatusCode.UNKNOWN), message)

    return handler


def _streaming(m: Method) -> Any:
    def handler(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            yield from m.handler(request, context)
            return
        except Exception as exc:
            code, message = status_of(exc)
        context.abort(_CODES.get(code, grpc.StatusCode.UNKNOWN), message)

    return handler


class GrpcioServer:
    def __init__(self, max_workers: int, max_recv: int, max_send: int) -> None:
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", max_recv),
                ("grpc.max_send_message_length", max_send),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=None,
        )
        self.service_names: set[str] = set()

    def add_service(self, descriptor: ServiceDescriptor, servicer: object) -> None:
        self.add_methods(descriptor.full_name, methods_of(descriptor, servicer))

    def add_methods(self, service: str, methods: list[Method]) -> None:
        self.service_names.add(service)
        handlers = {}
        for m in methods:
            kind = {
                (False, False): grpc.unary_unary_rpc_method_handler,
                (False, True): grpc.unary_stream_rpc_method_handler,
                (True, False): grpc.stream_unary_rpc_method_handler,
                (True, True): grpc.stream_stream_rpc_method_handler,
            }[(m.client_streaming, m.server_streaming)]
            wrap = _streaming if m.server_streaming else _unary
            handlers[m.name] = kind(
                wrap(m), request_deserializer=m.request.FromString, response_serializer=_serialize
            )
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, handlers),)
        )

    def add_insecure_port(self, address: str) -> int:
        return int(self.server.add_insecure_port(address))

    def start(self) -> None:
        self.server.start()

    def stop(self, grace: float | None) -> Any:
        return self.server.stop(grace)
