"""What every skiff command shares: the Cli object (streams, config, a lazy
client), argument parsing with docker's exit codes, and the errors commands
raise.

Part of the CLI (DESIGN.md: skiff CLI -> skiff.client). Rule 8 of STYLE.md:
each command parses, calls the client, formats.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, Any, TextIO

from skiff.cli.config import ConfigFile, Endpoint, resolve_endpoint
from skiff.client import Client, TLSConfig

if TYPE_CHECKING:
    from skiff.cli.argparsing import Parser


class StatusError(Exception):
    """End the command with this exit status, printing message (if any) to stderr."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class UsageError(StatusError):
    def __init__(self, message: str) -> None:
        super().__init__(125, message)


class Cli:
    """The state of one skiff invocation."""

    def __init__(self, config_dir: str, context: str | None = None,
                 hosts: Sequence[str] = (), tls: TLSConfig | None = None,
                 out: TextIO | None = None, err: TextIO | None = None) -> None:  # fmt: skip
        self.config_dir = config_dir
        self.context_flag = context
        self.hosts = list(hosts)
        self.tls_flags = tls
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._config: ConfigFile | None = None
        self._endpoint: Endpoint | None = None
        self._client: Client | None = None
        # the exit status for a daemon error: docker uses 125 in run/create/exec
        self.daemon_error_status = 1

    @property
    def config(self) -> ConfigFile:
        if self._config is None:
            self._config = ConfigFile(self.config_dir)
        return self._config

    @property
    def endpoint(self) -> Endpoint:
        if self._endpoint is None:
            self._endpoint = resolve_endpoint(
                self.context_flag, self.hosts, self.config, self.tls_flags
            )
        return self._endpoint

    @property
    def client(self) -> Client:
        if self._client is None:
            ep = self.endpoint
            self._client = Client(ep.host, tls=ep.tls, version=os.environ.get("DOCKER_API_VERSION"))
        return self._client

    def print(self, *args: Any, **kw: Any) -> None:
        print(*args, file=self.out, **kw)

    def eprint(self, *args: Any, **kw: Any) -> None:
        # what went to stdout first comes first, as with the docker CLI's unbuffered writes
        with contextlib.suppress(OSError, ValueError):
            self.out.flush()
        print(*args, file=self.err, **kw)

    def out_binary(self) -> IO[bytes]:
        self.out.flush()
        buffer: IO[bytes] = getattr(self.out, "buffer")  # noqa: B009
        return buffer

    def out_is_tty(self) -> bool:
        try:
            return self.out.isatty()
        except (AttributeError, ValueError):
            return False


def parser(prog: str, description: str = "", usage: str | None = None,
           add_help: bool = True) -> Parser:  # fmt: skip
    """An argparse parser with docker's usage errors (argparse is imported on first use)."""
    from skiff.cli.argparsing import Parser

    return Parser(prog=f"skiff {prog}", description=description, usage=usage,
                  allow_abbrev=False, add_help=add_help)  # fmt: skip


def parse_kv_filters(values: Sequence[str] | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values or []:
        k, sep, val = v.partition("=")
        if not sep:
            raise UsageError(f"bad format of filter (expected name=value): {v}")
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def parse_labels(values: Sequence[str] | None, files: Sequence[str] = ()) -> dict[str, str]:
    out: dict[str, str] = {}
    for path in files:
        with open(path) as f:
            text = f.read()
        for line in text.splitlines():
            if line.strip() and not line.startswith("#"):
                k, _, v = line.partition("=")
                out[k] = v
    for v in values or []:
        k, _, val = v.partition("=")
        out[k] = val
    return out
