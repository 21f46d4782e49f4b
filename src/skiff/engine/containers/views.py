"""How containers look on the wire: `docker inspect`, `docker ps`, and ps's filters."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from skiff.engine.containers.logs import parse_time
from skiff.engine.containers.model import Container, Status
from skiff.errors import InvalidArgument
from skiff.oci.runtime_spec import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS

_PRIVATE = ("ImageName", "SkiffUpperDir", "SkiffStartedMono", "HasBeenManuallyStopped")


def inspect(c: Container, size: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in c.data.items() if k not in _PRIVATE and k != "ID"}
    out = {"Id": c.id, **out}
    out["HostConfig"] = host_config(c.host)
    out["State"] = dict(c.state)
    config = out.get("Config")
    if isinstance(config, dict) and config.get("Volumes") == {}:
        # dockerd's Config.Volumes is null when neither image nor run declares one
        out["Config"] = {**config, "Volumes": None}
    return out


_HOST_DEFAULTS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
    "NetworkMode": "default", "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0},
    "AutoRemove": False, "VolumeDriver": "", "VolumesFrom": None, "ConsoleSize": [0, 0],
    "CapAdd": None, "CapDrop": None, "CgroupnsMode": "host", "Dns": [], "DnsOptions": [],
    "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "",
    "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False,
    "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864,
    "Runtime": "io.containerd.skiff.v1", "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": [],
    "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
    "CpusetCpus": "", "CpusetMems": "", "Devices": [], "DeviceCgroupRules": None,
    "DeviceRequests": None, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None,
    "OomKillDisable": None, "PidsLimit": None, "Ulimits": [], "CpuCount": 0, "CpuPercent": 0,
    "IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
    "Init": None, "Tmpfs": None, "Mounts": None,
}  # fmt: skip


def host_config(host: dict[str, Any]) -> dict[str, Any]:
    out = dict(_HOST_DEFAULTS)
    out.update({k: v for k, v in host.items()})
    # what dockerd fills in at create where the client left it empty: the modes the
    # spec gives (no cgroup namespace, a private IPC one), no pids limit for 0 or -1,
    # and the paths the spec masks and makes read-only unless privileged
    if not out.get("CgroupnsMode"):
        out["CgroupnsMode"] = "host"
    if not out.get("IpcMode"):
        out["IpcMode"] = "private"
    if out.get("PidsLimit") is not None and int(out["PidsLimit"]) <= 0:
        out["PidsLimit"] = None
    if not out.get("Privileged"):
        if out.get("MaskedPaths") is None:
            out["MaskedPaths"] = list(DEFAULT_MASKED_PATHS)
        if out.get("ReadonlyPaths") is None:
            out["ReadonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    # omitted when empty in dockerd's JSON (omitempty)
    for key in ("Init", "Mounts", "Tmpfs"):
        if not out.get(key) and out.get(key) is not False:
            out.pop(key, None)
    return out


def command(c: Container) -> str:
    args = [c.data.get("Path", ""), *list(c.data.get("Args") or [])]
    return " ".join(a for a in args if a is not None)


def human_duration(seconds: float) -> str:
    """Go's units.HumanDuration, what `docker ps` shows."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def _ts(text: str) -> float:
    if not text or text.startswith("0001-"):
        return 0.0
    try:
        return parse_time(text)
    except ValueError:
        return 0.0


def status_text(c: Container) -> str:
    st = c.state
    now = time.time()
    s = c.status
    if s in (Status.RUNNING, Status.PAUSED):
        text = f"Up {human_duration(now - _ts(st.get('StartedAt', '')))}"
        if s == Status.PAUSED:
            text += " (Paused)"
        health = (st.get("Health") or {}).get("Status")
        if health:
            text += f" (health: {health})" if health == "starting" else f" ({health})"
        return text
    if s == Status.RESTARTING:
        return f"Restarting ({st.get('ExitCode', 0)}) {human_duration(now - _ts(st.get('FinishedAt', '')))} ago"
    if s == Status.REMOVING:
        return "Removal In Progress"
    if s == Status.DEAD:
        return "Dead"
    if s == Status.CREATED or _ts(st.get("FinishedAt", "")) == 0:
        return "Created"
    return f"Exited ({st.get('ExitCode', 0)}) {human_duration(now - _ts(st.get('FinishedAt', '')))} ago"


def list_entry(c: Container) -> dict[str, Any]:
    ports: list[dict[str, Any]] = []
    published = (c.data.get("NetworkSettings") or {}).get("Ports") or {}
    for spec, bindings in published.items():
        number, _, proto = spec.partition("/")
        if not bindings:
            ports.append({"PrivatePort": int(number), "Type": proto or "tcp"})
        for b in bindings or []:
            ports.append(
                {
                    "IP": b.get("HostIp") or "0.0.0.0",
                    "PrivatePort": int(number),
                    "PublicPort": int(b.get("HostPort") or 0),
                    "Type": proto or "tcp",
                }
            )
    return {
        "Id": c.id,
        "Names": [c.name],
        "Image": c.config.get("Image") or c.data.get("Image"),
        "ImageID": c.data.get("Image"),
        "Command": command(c),
        "Created": int(_ts(c.data.get("Created", ""))),
        "Ports": ports,
        "Labels": c.config.get("Labels") or {},
        "State": str(c.status),
        "Status": status_text(c),
        "HostConfig": {"NetworkMode": c.host.get("NetworkMode") or "default"},
        "NetworkSettings": {"Networks": c.data.get("NetworkSettings", {}).get("Networks", {})},
        "Mounts": c.data.get("Mounts") or [],
    }


def matches(c: Container, filters: dict[str, set[str]], by_ref: Any) -> bool:
    for key, wanted in filters.items():
        if not wanted:
            continue
        if key == "id":
            if not any(c.id.startswith(w) for w in wanted):
                return False
        elif key == "name":
            import re

            if not any(re.search(w, c.name.lstrip("/")) or re.search(w, c.name) for w in wanted):
                return False
        elif key == "status":
            for w in wanted:
                if w not in (
                    "created",
                    "restarting",
                    "running",
                    "removing",
                    "paused",
                    "exited",
                    "dead",
                ):
                    raise InvalidArgument(f"invalid filter 'status={w}'")
            if str(c.status) not in wanted:
                return False
        elif key == "label":
            labels = c.config.get("Labels") or {}
            for w in wanted:
                k, sep, v = w.partition("=")
                if k not in labels or (sep and labels[k] != v):
                    return False
        elif key == "exited":
            try:
                codes = {int(w) for w in wanted}
            except ValueError:
                raise InvalidArgument("invalid filter 'exited'")
            if c.status != Status.EXITED or int(c.state.get("ExitCode", 0)) not in codes:
                return False
        elif key == "ancestor":
            image = str(c.config.get("Image") or "")
            iid = str(c.data.get("Image") or "")
            ok = False
            for w in wanted:
                base = w if ":" in w.split("/")[-1] or "@" in w else w + ":latest"
                img_base = (
                    image if ":" in image.split("/")[-1] or "@" in image else image + ":latest"
                )
                if (
                    w in (image, iid)
                    or base == img_base
                    or iid.removeprefix("sha256:").startswith(w.removeprefix("sha256:"))
                    or str(c.data.get("ImageName") or "").endswith("/" + base)
                ):
                    ok = True
            if not ok:
                return False
        elif key in ("before", "since"):
            other = by_ref(next(iter(wanted)))
            a, b = _ts(c.data.get("Created", "")), _ts(other.data.get("Created", ""))
            if key == "before" and not a < b:
                return False
            if key == "since" and not a > b:
                return False
        elif key == "volume":
            if not any(
                m.get("Name") in wanted
                or m.get("Destination") in wanted
                or m.get("Source") in wanted
                for m in c.data.get("Mounts") or []
            ):
                return False
        elif key == "network":
            if not set((c.data.get("NetworkSettings") or {}).get("Networks", {})) & wanted:
                return False
        elif key == "health":
            health = (c.state.get("Health") or {}).get("Status") or "none"
            if health not in wanted:
                return False
        elif key == "isolation":
            if "default" not in wanted:
                return False
        elif key in ("publish", "expose", "is-task"):
            continue
        else:
            raise InvalidArgument(f"invalid filter '{key}'")
    return True


def list_containers(
    containers: Iterable[Container],
    filters: dict[str, set[str]],
    by_ref: Any,
    all_: bool = False,
    limit: int = -1,
) -> list[Container]:
    """The containers `GET /containers/json` shows, newest first. As dockerd's list:
    a limit counts the most recently created containers, stopped ones included
    (`docker ps -l`, `-n N`); otherwise only running ones unless `all` or a status
    or exited filter asks for others."""
    every = all_ or limit > 0 or "status" in filters or "exited" in filters
    out = []
    for c in sorted(containers, key=created_sort_key, reverse=True):
        if not (every or c.running or c.status == Status.RESTARTING):
            continue
        if not matches(c, filters, by_ref):
            continue
        out.append(c)
        if limit > 0 and len(out) == limit:
            break
    return out


def created_sort_key(c: Container) -> float:
    return _ts(c.data.get("Created", ""))
