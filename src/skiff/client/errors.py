"""Errors of the Engine API client, grafted onto skiff's one hierarchy.

Sits between the CLI and the Engine API (DESIGN.md): every HTTP error
response and every failure to reach the daemon becomes one of these::

    skiff.errors.SkiffError
     └── ClientError
          ├── DaemonUnreachable (+ skiff.errors.Unavailable)   no socket / refused
          └── APIError                                          any 4xx/5xx
               ├── BadRequest   (+ InvalidArgument)             400
               ├── NotFound     (+ skiff.errors.NotFound)       404
               ├── Conflict     (+ skiff.errors.Conflict)       409
               └── ServerError  (+ Internal)                    500
"""

from __future__ import annotations

from skiff import errors


class ClientError(errors.SkiffError):
    """Base of the client's errors."""


class DaemonUnreachable(ClientError, errors.Unavailable):
    """The daemon's socket does not exist or refuses connections."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot connect to the daemon at {host}: {reason}")
        self.host = host
        self.reason = reason


class APIError(ClientError):
    """An error response from the daemon; str() is the daemon's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.http_status = status


class BadRequest(APIError, errors.InvalidArgument):
    pass


class NotFound(APIError, errors.NotFound):
    pass


class Conflict(APIError, errors.Conflict):
    pass


class ServerError(APIError, errors.Internal):
    pass


def error_for(status: int, message: str) -> APIError:
    cls: type[APIError] = {400: BadRequest, 404: NotFound, 409: Conflict, 500: ServerError}.get(
        status, APIError
    )
    return cls(status, message)
