"""What rides with each request: the containerd namespace and lease, set by
the gRPC edge from the `containerd-namespace` and `containerd-lease`
metadata, read by the services (no global state besides these variables)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from skiff.containerd.metadata.db import validate_identifier
from skiff.errors import FailedPrecondition

NAMESPACE_KEY = "containerd-namespace"
LEASE_KEY = "containerd-lease"

namespace_var: ContextVar[str | None] = ContextVar("containerd_namespace", default=None)
lease_var: ContextVar[str | None] = ContextVar("containerd_lease", default=None)


def required_namespace() -> str:
    ns = namespace_var.get()
    if not ns:
        # containerd's own wording, which clients match on
        raise FailedPrecondition("namespace is required: failed precondition")
    validate_identifier("namespace", ns)
    return ns


def current_lease() -> str | None:
    return lease_var.get() or None


@contextmanager
def request_context(namespace: str | None, lease: str | None = None) -> Iterator[None]:
    t1 = namespace_var.set(namespace)
    t2 = lease_var.set(lease)
    try:
        yield
    finally:
        lease_var.reset(t2)
        namespace_var.reset(t1)
