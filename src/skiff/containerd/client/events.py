"""Decoding event envelopes: the Any payload's type URL names one of the
event messages in skiff.api.gen (containerd.events.*, image events), which
are registered here so the payload can be shown as a dict."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory

# imported for their registration in the default descriptor pool
from skiff.api.gen.containerd.events import (  # noqa: F401
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    snapshot_pb2,
    task_pb2,
)
from skiff.containerd.client.types import Envelope


def _message_class(type_url: str) -> Any:
    name = type_url.rsplit("/", 1)[-1]
    try:
        return message_factory.GetMessageClass(
            descriptor_pool.Default().FindMessageTypeByName(name)
        )
    except KeyError:
        return None


def decode_payload(type_url: str, value: bytes) -> dict[str, Any] | None:
    cls = _message_class(type_url)
    if cls is None:
        return None
    msg = cls.FromString(value)
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out


def decode_envelope(env: Any) -> Envelope:
    from skiff.containerd.client.core import _time

    return Envelope(
        timestamp=_time(env.timestamp),
        namespace=str(env.namespace),
        topic=str(env.topic),
        event_type=str(env.event.type_url),
        event=decode_payload(env.event.type_url, env.event.value),
        raw=bytes(env.event.value),
    )
