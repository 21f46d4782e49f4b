"""One error hierarchy for every layer of skiff.

Each class knows the gRPC status code (as its integer, so that the runtime
need not import grpc) and the HTTP status it maps to at the API edges::

    SkiffError
     ├── NotFound            NOT_FOUND (5)            404
     ├── AlreadyExists       ALREADY_EXISTS (6)       409
     ├── Conflict            FAILED_PRECONDITION (9)  409
     ├── InvalidArgument     INVALID_ARGUMENT (3)     400
     ├── FailedPrecondition  FAILED_PRECONDITION (9)  412
     ├── Unavailable         UNAVAILABLE (14)         503
     ├── NotImplemented_     UNIMPLEMENTED (12)       501
     └── Internal            INTERNAL (13)            500
"""

from __future__ import annotations


class SkiffError(Exception):
    """Base of every error skiff raises on purpose."""

    grpc_code: int = 2  # UNKNOWN
    http_status: int = 500


class NotFound(SkiffError):
    grpc_code = 5
    http_status = 404


class AlreadyExists(SkiffError):
    grpc_code = 6
    http_status = 409


class Conflict(SkiffError):
    grpc_code = 9
    http_status = 409


class InvalidArgument(SkiffError):
    grpc_code = 3
    http_status = 400


class FailedPrecondition(SkiffError):
    grpc_code = 9
    http_status = 412


class Unavailable(SkiffError):
    grpc_code = 14
    http_status = 503


class NotImplemented_(SkiffError):
    grpc_code = 12
    http_status = 501


class Internal(SkiffError):
    grpc_code = 13
    http_status = 500
