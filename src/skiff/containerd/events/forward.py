"""The ttrpc side of the exchange: shims call
containerd.services.events.ttrpc.v1.Events/Forward on `<grpc address>.ttrpc`
(they learn it from TTRPC_ADDRESS), as with containerd."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable

from skiff.containerd.events.exchange import Envelope, Exchange
from skiff.containerd.metadata.db import AnyValue
from skiff.errors import InvalidArgument
from skiff.ttrpc import events as ev
from skiff.ttrpc.protobuf import Empty
from skiff.ttrpc.server import Server, listen_unix


def forward_handler(exchange: Exchange) -> Callable[[bytes, dict[str, str]], bytes]:
    def forward(payload: bytes, metadata: dict[str, str]) -> bytes:
        req = ev.ForwardRequest.decode(payload)
        env = req.envelope
        if env is None:
            raise InvalidArgument("forward: envelope must be set")
        ts = env.timestamp.to_ns() if env.timestamp is not None else 0
        event = AnyValue(env.event.type_url, env.event.value) if env.event is not None else None
        exchange.forward(Envelope(ts, env.namespace, env.topic, event))
        return Empty().encode()

    return forward


class ForwardServer:
    """Listens on `path` and feeds forwarded envelopes into the exchange."""

    def __init__(self, path: str, exchange: Exchange) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self._listener: socket.socket = listen_unix(path)
        os.chmod(path, 0o600)
        self._server = Server()
        self._server.register(ev.SERVICE, {"Forward": forward_handler(exchange)})
        self._server.serve_in_thread(self._listener)

    def close(self) -> None:
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
