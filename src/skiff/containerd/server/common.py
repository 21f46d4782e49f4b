"""What every adapter shares: the request context from gRPC metadata, error
mapping (skiff.errors -> RpcStatus, which either gRPC server sends), and
protobuf conversions. Imports no gRPC library."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from google.protobuf import any_pb2, timestamp_pb2

from skiff.api.gen.containerd.types import descriptor_pb2, mount_pb2
from skiff.containerd.metadata.db import AnyValue
from skiff.containerd.server.rpc import RpcStatus, status_of
from skiff.containerd.services.context import LEASE_KEY, NAMESPACE_KEY, request_context
from skiff.containerd.snapshots import Mount
from skiff.ttrpc import task as tt

F = TypeVar("F", bound=Callable[..., Any])


def _metadata(context: Any) -> dict[str, str]:
    return {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}


def unary(fn: F) -> F:
    """Run a unary handler inside the request's namespace and lease context;
    any failure leaves as an RpcStatus, which either server sends."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: Any) -> Any:
        md = _metadata(context)
        try:
            with request_context(md.get(NAMESPACE_KEY), md.get(LEASE_KEY)):
                return fn(self, request, context)
        except Exception as exc:
            raise RpcStatus(*status_of(exc)) from None

    return wrapper  # type: ignore[return-value]


def streaming(fn: F) -> F:
    """The same for handlers that return a stream of responses."""

    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: Any) -> Iterator[Any]:
        md = _metadata(context)
        try:
            with request_context(md.get(NAMESPACE_KEY), md.get(LEASE_KEY)):
                yield from fn(self, request, context)
        except GeneratorExit:
            raise
        except Exception as exc:
            raise RpcStatus(*status_of(exc)) from None

    return wrapper  # type: ignore[return-value]


def ts(ns: int) -> timestamp_pb2.Timestamp:
    t = timestamp_pb2.Timestamp()
    if ns:
        t.FromNanoseconds(int(ns))
    return t


def ts_ns(t: Any) -> int:
    return int(t.seconds) * 1_000_000_000 + int(t.nanos)


def any_in(a: Any) -> AnyValue | None:
    if a is None or not a.type_url:
        return None
    return AnyValue(a.type_url, bytes(a.value))


def any_out(a: AnyValue | None) -> any_pb2.Any | None:
    if a is None:
        return None
    return any_pb2.Any(type_url=a.type_url, value=a.value)


def mounts_out(mounts: list[Mount]) -> list[Any]:
    return [
        mount_pb2.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def mounts_in(mounts: Any) -> list[Mount]:
    return [
        Mount(type=m.type, source=m.source, target=m.target, options=tuple(m.options))
        for m in mounts
    ]


def ttrpc_mounts_in(mounts: Any) -> list[tt.Mount]:
    return [
        tt.Mount(type=m.type, source=m.source, target=m.target, options=list(m.options))
        for m in mounts
    ]


def descriptor_out(media_type: str, digest: str, size: int, annotations: Mapping[str, str]) -> Any:
    return descriptor_pb2.Descriptor(
        media_type=media_type, digest=digest, size=size, annotations=dict(annotations)
    )


def paths_of(mask: Any) -> list[str]:
    return list(mask.paths) if mask is not None else []
