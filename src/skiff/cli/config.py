"""The CLI's configuration directory: config.json (auths, currentContext) and
the context store, laid out as the docker CLI lays out its own.

Part of the CLI (DESIGN.md: skiff CLI). The directory is ~/.skiff unless
--config or SKIFF_CONFIG say otherwise; pointing the docker CLI's
DOCKER_CONFIG at the same directory makes both see the same contexts::

    <dir>/config.json                                   {"auths": ..., "currentContext": ...}
    <dir>/contexts/meta/<sha256(name)>/meta.json        {"Name", "Metadata", "Endpoints"}
    <dir>/contexts/tls/<sha256(name)>/docker/{ca,cert,key}.pem
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from skiff.client.transport import DEFAULT_HOST, TLSConfig

if TYPE_CHECKING:
    # pathlib pulls in fnmatch and re: the common path (default context) does without
    from pathlib import Path

DEFAULT_CONTEXT = "default"


class ConfigError(Exception):
    pass


def config_dir(flag: str | None) -> str:
    if flag:
        return flag
    env = os.environ.get("SKIFF_CONFIG")
    if env:
        return env
    return os.path.join(os.path.expanduser("~"), ".skiff")


def write_atomic(path: str | Path, data: bytes, mode: int = 0o644) -> None:
    import tempfile

    parent, name = os.path.split(os.fspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class ConfigFile:
    """config.json, keeping the keys skiff does not know about."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = os.fspath(directory)
        self.path = os.path.join(self.dir, "config.json")
        try:
            with open(self.path) as f:
                self.data: dict[str, Any] = json.loads(f.read() or "{}")
        except FileNotFoundError:
            self.data = {}
        except ValueError as e:
            raise ConfigError(f"loading config file {self.path}: {e}") from e

    def save(self) -> None:
        write_atomic(self.path, (json.dumps(self.data, indent="\t") + "\n").encode(), 0o600)

    @property
    def current_context(self) -> str:
        return str(self.data.get("currentContext") or "")

    @current_context.setter
    def current_context(self, name: str) -> None:
        if name and name != DEFAULT_CONTEXT:
            self.data["currentContext"] = name
        else:
            self.data.pop("currentContext", None)


class Context:
    """One stored context: its docker endpoint and the TLS files beside it."""

    def __init__(self, *, name: str, description: str, host: str, skip_tls_verify: bool,
                 tls_files: dict[str, Path], meta: dict[str, Any]) -> None:  # fmt: skip
        self.name = name
        self.description = description
        self.host = host
        self.skip_tls_verify = skip_tls_verify
        self.tls_files = tls_files  # ca/cert/key -> path in the store
        self.meta = meta

    def tls(self) -> TLSConfig | None:
        if not self.tls_files and not self.skip_tls_verify:
            return None
        get = self.tls_files.get
        return TLSConfig(
            ca=str(get("ca")) if get("ca") else None,
            cert=str(get("cert")) if get("cert") else None,
            key=str(get("key")) if get("key") else None,
            verify=not self.skip_tls_verify,
        )


def context_id(name: str) -> str:
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()


class ContextStore:
    def __init__(self, directory: str | Path) -> None:
        from pathlib import Path

        directory = Path(directory)
        self.meta_root = directory / "contexts" / "meta"
        self.tls_root = directory / "contexts" / "tls"

    def meta_dir(self, name: str) -> Path:
        return self.meta_root / context_id(name)

    def tls_dir(self, name: str) -> Path:
        return self.tls_root / context_id(name)

    def exists(self, name: str) -> bool:
        return (self.meta_dir(name) / "meta.json").exists()

    def names(self) -> list[str]:
        out = []
        if self.meta_root.is_dir():
            for d in self.meta_root.iterdir():
                try:
                    out.append(json.loads((d / "meta.json").read_text())["Name"])
                except (OSError, ValueError, KeyError):
                    continue
        return sorted(out)

    def load(self, name: str) -> Context:
        path = self.meta_dir(name) / "meta.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"context {name!r} does not exist") from None
        except ValueError as e:
            raise ConfigError(f"parsing {path}: {e}") from e
        ep = (meta.get("Endpoints") or {}).get("docker") or {}
        tls_files = {}
        tdir = self.tls_dir(name) / "docker"
        for key in ("ca", "cert", "key"):
            p = tdir / f"{key}.pem"
            if p.exists():
                tls_files[key] = p
        return Context(
            name=meta.get("Name", name),
            description=str((meta.get("Metadata") or {}).get("Description", "")),
            host=str(ep.get("Host", "")),
            skip_tls_verify=bool(ep.get("SkipTLSVerify", False)),
            tls_files=tls_files,
            meta=meta,
        )

    def create(self, name: str, host: str, description: str = "", skip_tls_verify: bool = False,
               tls_material: dict[str, bytes] | None = None) -> None:  # fmt: skip
        meta: dict[str, Any] = {
            "Name": name,
            "Metadata": {"Description": description} if description else {},
            "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_tls_verify}},
        }
        write_atomic(self.meta_dir(name) / "meta.json", json.dumps(meta).encode())
        if tls_material:
            tdir = self.tls_dir(name) / "docker"
            for key, data in tls_material.items():
                write_atomic(tdir / f"{key}.pem", data, 0o600 if key == "key" else 0o644)

    def update(self, name: str, host: str | None = None, description: str | None = None) -> None:
        ctx = self.load(name)
        meta = ctx.meta
        if description is not None:
            meta["Metadata"] = {"Description": description} if description else {}
        if host is not None:
            meta.setdefault("Endpoints", {}).setdefault("docker", {})["Host"] = host
        write_atomic(self.meta_dir(name) / "meta.json", json.dumps(meta).encode())

    def remove(self, name: str) -> None:
        if not self.exists(name):
            raise ConfigError(f"context {name!r} does not exist")
        import shutil

        shutil.rmtree(self.meta_dir(name), ignore_errors=True)
        shutil.rmtree(self.tls_dir(name), ignore_errors=True)


def default_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_HOST


class Endpoint:
    """The daemon this invocation talks to, and the context that named it."""

    def __init__(self, context: str, host: str, tls: TLSConfig | None) -> None:
        self.context, self.host, self.tls = context, host, tls


def resolve_context_name(flag_context: str | None, flag_hosts: list[str],
                         config: ConfigFile) -> str:  # fmt: skip
    """The docker CLI's order: --context, --host, DOCKER_HOST, DOCKER_CONTEXT, currentContext."""
    if flag_context:
        if flag_hosts:
            raise ConfigError("conflicting options: cannot specify both --host and --context")
        return flag_context
    if flag_hosts or os.environ.get("DOCKER_HOST"):
        return DEFAULT_CONTEXT
    env = os.environ.get("DOCKER_CONTEXT")
    if env:
        return env
    return config.current_context or DEFAULT_CONTEXT


def resolve_endpoint(flag_context: str | None, flag_hosts: list[str], config: ConfigFile,
                     tls: TLSConfig | None) -> Endpoint:  # fmt: skip
    name = resolve_context_name(flag_context, flag_hosts, config)
    if name == DEFAULT_CONTEXT:
        host = flag_hosts[0] if flag_hosts else default_host()
        if "://" not in host:
            host = ("unix://" if host.startswith("/") else "tcp://") + host
        return Endpoint(name, host, tls)
    ctx = ContextStore(config.dir).load(name)
    return Endpoint(name, ctx.host, ctx.tls() or tls)
