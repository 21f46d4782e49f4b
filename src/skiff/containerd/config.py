"""skiff-containerd's configuration: TOML defaults, a `--config FILE` merged
over them, command-line flags over both. `config default` and `config dump`
print TOML through the small emitter here (the standard library only reads it).
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Mapping
from typing import Any

from skiff.errors import InvalidArgument

DEFAULT_ADDRESS = "/run/skiff/containerd/containerd.sock"
DEFAULT_ROOT = "/var/lib/skiff/containerd"
DEFAULT_STATE = "/run/skiff/containerd"

DEFAULTS: dict[str, Any] = {
    "version": 2,
    "root": DEFAULT_ROOT,
    "state": DEFAULT_STATE,
    "grpc": {
        "address": DEFAULT_ADDRESS,
        # "h2": skiff's own gRPC server over the h2 package; "grpcio": grpcio's
        "server": "h2",
        "max_workers": 64,
        "max_recv_message_size": 16 << 20,
        "max_send_message_size": 16 << 20,
    },
    "ttrpc": {"address": ""},  # empty: "<grpc address>.ttrpc", as containerd
    "debug": {"level": "info"},
    "snapshotters": {"default": "overlayfs", "enabled": ["overlayfs", "native"]},
    "runtimes": {
        # runtime name -> shim binary (a bare name is looked up beside our
        # Python, then on PATH)
        "io.containerd.skiff.v1": {"shim": "containerd-shim-skiff-v1"},
        "io.containerd.runc.v2": {"shim": "containerd-shim-runc-v2"},
    },
}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load(path: str | None) -> dict[str, Any]:
    if not path:
        return copy.deepcopy(DEFAULTS)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidArgument(f"config file {path}: not found")
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"config file {path}: {e}")
    return merge(DEFAULTS, data)


def apply_flags(
    config: dict[str, Any],
    *,
    address: str | None = None,
    root: str | None = None,
    state: str | None = None,
    log_level: str | None = None,
) -> dict[str, Any]:
    config = copy.deepcopy(config)
    if address:
        config["grpc"]["address"] = address
    if root:
        config["root"] = root
    if state:
        config["state"] = state
    if log_level:
        config["debug"]["level"] = log_level
    return config


def ttrpc_address(config: Mapping[str, Any]) -> str:
    return str(config["ttrpc"].get("address") or config["grpc"]["address"] + ".ttrpc")


def shims(config: Mapping[str, Any]) -> dict[str, str]:
    return {
        name: str(rt["shim"])
        for name, rt in config.get("runtimes", {}).items()
        if isinstance(rt, Mapping) and rt.get("shim")
    }


# -- a tiny TOML emitter ----------------------------------------------------------

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else _string(k)


def _string(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return f'"{out}"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise InvalidArgument(f"cannot write {type(v).__name__} as TOML")


def dumps(config: Mapping[str, Any]) -> str:
    lines: list[str] = []

    def table(path: list[str], obj: Mapping[str, Any]) -> None:
        scalars = [(k, v) for k, v in obj.items() if not isinstance(v, Mapping)]
        tables = [(k, v) for k, v in obj.items() if isinstance(v, Mapping)]
        if path and (scalars or not tables):
            if lines:
                lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in tables:
            table([*path, k], v)

    table([], config)
    return "\n".join(lines) + "\n"


def resolved(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as the daemon will use it (derived addresses filled in)."""
    out = copy.deepcopy(dict(config))
    out["ttrpc"]["address"] = ttrpc_address(config)
    out["root"] = os.path.abspath(out["root"])
    out["state"] = os.path.abspath(out["state"])
    return out
