"""gRPC adapter: containerd.services.events.v1.Events (Publish, Forward,
Subscribe; a subscription ends when its client goes away)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import empty_pb2

from skiff.api.gen.containerd.services.events.v1 import events_pb2 as pb
from skiff.containerd.events import Envelope, Exchange
from skiff.containerd.server.common import any_in, any_out, streaming, ts, ts_ns, unary
from skiff.containerd.services.context import required_namespace
from skiff.errors import InvalidArgument


class EventsAdapter:
    def __init__(self, exchange: Exchange) -> None:
        self.x = exchange

    @unary
    def Publish(self, req: Any, ctx: Any) -> Any:
        self.x.publish(required_namespace(), req.topic, any_in(req.event))
        return empty_pb2.Empty()

    @unary
    def Forward(self, req: Any, ctx: Any) -> Any:
        e = req.envelope
        if not req.HasField("envelope"):
            raise InvalidArgument("forward: envelope must be set")
        self.x.forward(Envelope(ts_ns(e.timestamp), e.namespace, e.topic, any_in(e.event)))
        return empty_pb2.Empty()

    @streaming
    def Subscribe(self, req: Any, ctx: Any) -> Iterator[Any]:
        sub = self.x.subscribe(list(req.filters))
        try:
            while ctx.is_active() and not sub.closed:
                env = sub.get(timeout=0.5)
                if env is None:
                    continue
                yield pb.Envelope(
                    timestamp=ts(env.timestamp),
                    namespace=env.namespace,
                    topic=env.topic,
                    event=any_out(env.event),
                )
        finally:
            sub.close()


def register(server: Any, exchange: Exchange) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Events"], EventsAdapter(exchange))
