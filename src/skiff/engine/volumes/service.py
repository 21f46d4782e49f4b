"""The local volume driver: named directories under `<data-root>/volumes/`.

skiffd -> volumes: each volume is `<data-root>/volumes/<name>/_data` with its
options and labels in `opts.json`. Containers bind-mount `_data`; a new volume
is filled from the image's content at the mount path on first use, as Docker
does. Anonymous volumes get a 64-hex name and go with `docker rm -v`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import secrets
import shutil
import time
from typing import Any

from skiff.engine.containers.logs import rfc3339
from skiff.engine.containers.model import write_atomic
from skiff.errors import Conflict, InvalidArgument, NotFound

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


class Volume:
    def __init__(self, name: str, path: str, meta: dict[str, Any]):
        self.name = name
        self.path = path  # the volume's directory; the data is in _data
        self.meta = meta

    @property
    def mountpoint(self) -> str:
        return os.path.join(self.path, "_data")

    def inspect(self) -> dict[str, Any]:
        return {
            "CreatedAt": self.meta.get("CreatedAt", ""),
            "Driver": "local",
            "Labels": self.meta.get("Labels") or {},
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": self.meta.get("Options") or {},
            "Scope": "local",
        }


class VolumeService:
    def __init__(self, root: str, events: Any):
        self.root = root
        self.events = events
        self.volumes: dict[str, Volume] = {}
        # which containers use which volume (filled by the container service)
        self.users: dict[str, set[str]] = {}
        os.makedirs(root, 0o701, exist_ok=True)
        for name in os.listdir(root):
            path = os.path.join(root, name)
            if not os.path.isdir(path):
                continue
            meta: dict[str, Any] = {}
            with (
                contextlib.suppress(FileNotFoundError, ValueError),
                open(os.path.join(path, "opts.json")) as f,
            ):
                meta = json.load(f)
            self.volumes[name] = Volume(name, path, meta)

    def create(
        self,
        name: str = "",
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        driver: str = "local",
        anonymous: bool = False,
    ) -> Volume:
        if driver not in ("", "local"):
            raise NotFound(f'error looking up volume plugin {driver}: plugin "{driver}" not found')
        if not name:
            name = secrets.token_hex(32)
            anonymous = True
        if not NAME_RE.match(name):
            raise InvalidArgument(
                f'create {name}: "{name}" includes invalid characters for a local volume '
                'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass '
                "a host directory, use absolute path"
            )
        if name in self.volumes:
            return self.volumes[name]
        for key in options or {}:
            if key not in ("type", "device", "o", "size"):
                raise InvalidArgument(f"invalid option: {key!r}")
        path = os.path.join(self.root, name)
        os.makedirs(os.path.join(path, "_data"), 0o755, exist_ok=True)
        meta = {
            "CreatedAt": rfc3339(time.time()),
            "Labels": dict(labels or {}),
            "Options": dict(options or {}),
            "Anonymous": anonymous,
            "Fresh": True,
        }
        write_atomic(os.path.join(path, "opts.json"), json.dumps(meta).encode())
        vol = Volume(name, path, meta)
        self.volumes[name] = vol
        self.events.emit("volume", "create", name, {"driver": "local"})
        return vol

    def get(self, name: str) -> Volume:
        vol = self.volumes.get(name)
        if vol is None:
            raise NotFound(f"get {name}: no such volume")
        return vol

    def take_fresh(self, vol: Volume) -> bool:
        """True once: when the volume was never mounted yet (fill it from the image)."""
        if not vol.meta.get("Fresh"):
            return False
        vol.meta["Fresh"] = False
        write_atomic(os.path.join(vol.path, "opts.json"), json.dumps(vol.meta).encode())
        return True

    def remove(self, name: str, force: bool = False) -> None:
        vol = self.volumes.get(name)
        if vol is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        users = self.users.get(name)
        if users:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(sorted(users))}]")
        shutil.rmtree(vol.path, ignore_errors=True)
        del self.volumes[name]
        self.events.emit("volume", "destroy", name, {"driver": "local"})

    def list(self, filters: dict[str, set[str]]) -> list[Volume]:
        out = []
        for vol in self.volumes.values():
            if "name" in filters and not any(n in vol.name for n in filters["name"]):
                continue
            if "driver" in filters and "local" not in filters["driver"]:
                continue
            if "dangling" in filters:
                want = next(iter(filters["dangling"])).lower() in ("1", "true")
                if want == bool(self.users.get(vol.name)):
                    continue
            if "label" in filters and not all(
                _label_ok(vol.meta.get("Labels") or {}, w) for w in filters["label"]
            ):
                continue
            out.append(vol)
        return out

    def prune(self, filters: dict[str, set[str]]) -> tuple[builtins.list[str], int]:
        # Docker >= 23 prunes only anonymous volumes unless all=true
        everything = "all" in filters and next(iter(filters["all"])).lower() in ("1", "true")
        rest = {k: v for k, v in filters.items() if k != "all"}
        removed, space = [], 0
        for vol in self.list(rest):
            if self.users.get(vol.name):
                continue
            if not everything and not vol.meta.get("Anonymous"):
                continue
            space += _du(vol.mountpoint)
            self.remove(vol.name)
            removed.append(vol.name)
        return removed, space

    def counts(self) -> dict[str, int]:
        return {}

    async def disk_usage(self) -> dict[str, Any]:
        vols = []
        for vol in self.volumes.values():
            info = vol.inspect()
            info["UsageData"] = {
                "Size": _du(vol.mountpoint),
                "RefCount": len(self.users.get(vol.name, ())),
            }
            vols.append(info)
        return {"Volumes": vols}


def _label_ok(labels: dict[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    return key in labels and (not sep or labels[key] == value)


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total
