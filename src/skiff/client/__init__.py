"""skiff.client: the Docker Engine API client library the skiff CLI is built on.

Layer: skiff CLI -> skiff.client -> Engine API (skiffd or dockerd), see DESIGN.md.
"""

from skiff.client.api import Client, Hijacked
from skiff.client.errors import (
    APIError,
    BadRequest,
    ClientError,
    Conflict,
    DaemonUnreachable,
    NotFound,
    ServerError,
)
from skiff.client.transport import DEFAULT_HOST, TLSConfig

__all__ = [
    "DEFAULT_HOST",
    "APIError",
    "BadRequest",
    "Client",
    "ClientError",
    "Conflict",
    "DaemonUnreachable",
    "Hijacked",
    "NotFound",
    "ServerError",
    "TLSConfig",
]
