"""gRPC's standard health service, grpc.health.v1.Health/Check, as
containerd serves it: Debian's dockerd asks it whether the supervisor is back
after losing its connection, and waits until it answers SERVING. Two tiny
messages, encoded with skiff.ttrpc's codec (no generated module needed)."""

from __future__ import annotations

from typing import Any

from skiff.containerd.server.rpc import NOT_FOUND, Method, RpcStatus
from skiff.ttrpc.protobuf import ENUM, STRING, Field, Message

SERVICE = "grpc.health.v1.Health"
SERVING = 1


class HealthCheckRequest(Message):
    NAME = "grpc.health.v1.HealthCheckRequest"
    FIELDS = (Field(1, "service", STRING),)

    @classmethod
    def FromString(cls, data: bytes) -> HealthCheckRequest:  # protobuf's method name
        return cls.decode(data)


class HealthCheckResponse(Message):
    NAME = "grpc.health.v1.HealthCheckResponse"
    FIELDS = (Field(1, "status", ENUM),)

    def SerializeToString(self) -> bytes:  # protobuf's method name
        return self.encode()


def register(server: Any) -> None:
    """Serve Check on `server` (either of ours): SERVING for the server as a
    whole ("") and for each service it serves, NotFound for any other."""

    def check(request: Any, context: Any) -> HealthCheckResponse:
        if request.service and request.service not in server.service_names:
            raise RpcStatus(NOT_FOUND, f"unknown service {request.service}")
        return HealthCheckResponse(status=SERVING)

    server.add_methods(
        SERVICE,
        [
            Method(
                path=f"/{SERVICE}/Check",
                name="Check",
                request=HealthCheckRequest,
                handler=check,
                client_streaming=False,
                server_streaming=False,
            )
        ],
    )
