"""Parsing docker's container flags (run/create/update) into Engine API JSON.

Part of the CLI (DESIGN.md: skiff CLI). Kept apart from container.py so the
translation of flags to Config/HostConfig can be unit-tested without a daemon.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Any

from skiff.cli.common import UsageError, parse_labels

UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(s: str) -> int:
    """units.RAMInBytes: binary multiples, optional trailing b ("512m", "1gb")."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)b?\s*", s.lower())
    if not m:
        raise UsageError(f"invalid size: '{s}'")
    return int(float(m.group(1)) * UNITS[m.group(2)])


def duration_ns(s: str) -> int:
    """A Go duration ("30s", "1m30s", "500ms") in nanoseconds."""
    total = 0.0
    scale = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise UsageError(f'invalid duration "{s}"')
    for num, unit in parts:
        total += float(num) * scale[unit]
    return int(total)


def add_create_flags(p: argparse.ArgumentParser, run: bool) -> None:
    a = p.add_argument
    if run:
        a("-d", "--detach", action="store_true")
        a("--sig-proxy", default="true")
    a("--help", action="help")
    a("-i", "--interactive", action="store_true")
    a("-t", "--tty", action="store_true")
    a("-a", "--attach", action="append", default=[])
    a("--rm", action="store_true")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--tmpfs", action="append", default=[])
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("-h", "--hostname")
    a("--entrypoint")
    a("--restart")
    a("-m", "--memory")
    a("--memory-swap")
    a("--cpus")
    a("--cpu-shares", type=int)
    a("--cpuset-cpus")
    a("--pids-limit", type=int)
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--privileged", action="store_true")
    a("--read-only", action="store_true")
    a("--network", "--net")
    a("--network-alias", action="append", default=[])
    a("--dns", action="append", default=[])
    a("--add-host", action="append", default=[])
    a("--init", action="store_true")
    a("-l", "--label", action="append", default=[])
    a("--label-file", action="append", default=[])
    a("--health-cmd")
    a("--health-interval")
    a("--health-timeout")
    a("--health-retries", type=int)
    a("--health-start-period")
    a("--no-healthcheck", action="store_true")
    a("--stop-signal")
    a("--stop-timeout", type=int)
    a("--detach-keys")
    a("--platform")
    a("--pull", default="missing", choices=["always", "missing", "never"])
    a("--shm-size")
    a("--ulimit", action="append", default=[])
    a("--security-opt", action="append", default=[])
    a("--sysctl", action="append", default=[])
    a("--device", action="append", default=[])
    a("--group-add", action="append", default=[])
    a("--ipc")
    a("--pid")
    a("--uts")
    a("--userns")
    a("--cgroupns")
    a("--log-driver")
    a("--log-opt", action="append", default=[])
    a("--runtime")
    a("--cidfile")
    a("-q", "--quiet", action="store_true")
    a("image")
    a("command", nargs=argparse.REMAINDER)


def env_list(values: list[str], files: list[str]) -> list[str]:
    out = []
    for path in files:
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise UsageError(f"open {path}: {e.strerror.lower() if e.strerror else e}") from e
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                out.append(env_entry(line))
    out += [env_entry(v) for v in values]
    return [e for e in out if e]


def env_entry(v: str) -> str:
    if "=" in v:
        return v
    # a bare name takes the value it has in skiff's own environment, if any
    return f"{v}={os.environ[v]}" if v in os.environ else ""


def parse_port_spec(spec: str) -> tuple[str, list[dict[str, str]]]:
    proto = "tcp"
    if "/" in spec:
        spec, proto = spec.rsplit("/", 1)
    host_ip, host_port = "", ""
    if spec.startswith("["):
        end = spec.index("]")
        host_ip = spec[1:end]
        rest = spec[end + 2 :]
        host_port, _, container = rest.rpartition(":")
    else:
        parts = spec.split(":")
        if len(parts) == 1:
            container = parts[0]
        elif len(parts) == 2:
            host_port, container = parts
        elif len(parts) == 3:
            host_ip, host_port, container = parts
        else:
            raise UsageError(f"invalid port format: {spec}")
    if not container or not container.replace("-", "").isdigit():
        raise UsageError(f"invalid containerPort: {container}")
    return f"{container}/{proto}", [{"HostIp": host_ip, "HostPort": host_port}]


def parse_mount(spec: str) -> dict[str, Any]:
    m: dict[str, Any] = {"Type": "volume"}
    for item in spec.split(","):
        k, sep, v = item.partition("=")
        k = k.strip().lower()
        if k in ("type",):
            m["Type"] = v
        elif k in ("source", "src"):
            m["Source"] = v
        elif k in ("target", "destination", "dst"):
            m["Target"] = v
        elif k in ("readonly", "ro"):
            m["ReadOnly"] = (not sep) or v.lower() in ("1", "true")
        elif k == "bind-propagation":
            m.setdefault("BindOptions", {})["Propagation"] = v
        elif k == "volume-nocopy":
            m.setdefault("VolumeOptions", {})["NoCopy"] = (not sep) or v == "true"
        elif k == "tmpfs-size":
            m.setdefault("TmpfsOptions", {})["SizeBytes"] = ram_in_bytes(v)
        elif k == "consistency":
            m["Consistency"] = v
        else:
            raise UsageError(f"invalid field '{k}' must be a key=value pair")
    if "Target" not in m:
        raise UsageError("invalid argument for --mount: target is required")
    return m


def restart_policy(spec: str) -> dict[str, Any]:
    name, _, count = spec.partition(":")
    if name not in ("no", "always", "on-failure", "unless-stopped"):
        raise UsageError(f"invalid restart policy {spec}")
    return {"Name": name, "MaximumRetryCount": int(count) if count else 0}


def build_create_body(o: argparse.Namespace, run: bool) -> dict[str, Any]:
    detach = bool(getattr(o, "detach", False))
    attach = set(a.lower() for a in o.attach)
    exposed: dict[str, Any] = {f"{e}/tcp" if "/" not in e else e: {} for e in o.expose}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in o.publish:
        port, binding = parse_port_spec(spec)
        exposed[port] = {}
        bindings.setdefault(port, []).extend(binding)
    binds: list[str] = []
    volumes: dict[str, Any] = {}
    for v in o.volume:
        if ":" in v:
            binds.append(v)
        else:
            volumes[v] = {}
    tmpfs = {}
    for t in o.tmpfs:
        path, _, opts = t.partition(":")
        tmpfs[path] = opts
    host: dict[str, Any] = {
        "Binds": binds or None,
        "NetworkMode": o.network or "default",
        "PortBindings": bindings or {},
        "RestartPolicy": restart_policy(o.restart) if o.restart else {"Name": "no"},
        "AutoRemove": o.rm,
        "CapAdd": o.cap_add or None,
        "CapDrop": o.cap_drop or None,
        "Privileged": o.privileged,
        "ReadonlyRootfs": o.read_only,
        "PublishAllPorts": o.publish_all,
        "Mounts": [parse_mount(m) for m in o.mount] or None,
        "Tmpfs": tmpfs or None,
        "Dns": o.dns or None,
        "ExtraHosts": o.add_host or None,
        "SecurityOpt": o.security_opt or None,
        "GroupAdd": o.group_add or None,
        "Sysctls": dict(s.split("=", 1) for s in o.sysctl) or None,
    }
    if o.init:
        host["Init"] = True
    if o.memory:
        host["Memory"] = ram_in_bytes(o.memory)
    if o.memory_swap:
        host["MemorySwap"] = -1 if o.memory_swap == "-1" else ram_in_bytes(o.memory_swap)
    if o.cpus:
        try:
            host["NanoCpus"] = round(float(o.cpus) * 1e9)
        except ValueError:
            raise UsageError(f'invalid argument "{o.cpus}" for "--cpus" flag') from None
    if o.cpu_shares is not None:
        host["CpuShares"] = o.cpu_shares
    if o.cpuset_cpus:
        host["CpusetCpus"] = o.cpuset_cpus
    if o.pids_limit is not None:
        host["PidsLimit"] = o.pids_limit
    if o.shm_size:
        host["ShmSize"] = ram_in_bytes(o.shm_size)
    for k, v in (("IpcMode", o.ipc), ("PidMode", o.pid), ("UTSMode", o.uts),
                 ("UsernsMode", o.userns), ("CgroupnsMode", o.cgroupns), ("Runtime", o.runtime)):  # fmt: skip
        if v:
            host[k] = v
    if o.ulimit:
        ul = []
        for u in o.ulimit:
            name, _, limits = u.partition("=")
            soft, _, hard = limits.partition(":")
            ul.append({"Name": name, "Soft": int(soft), "Hard": int(hard or soft)})
        host["Ulimits"] = ul
    if o.device:
        devs = []
        for d in o.device:
            parts = d.split(":")
            devs.append({"PathOnHost": parts[0],
                         "PathInContainer": parts[1] if len(parts) > 1 else parts[0],
                         "CgroupPermissions": parts[2] if len(parts) > 2 else "rwm"})  # fmt: skip
        host["Devices"] = devs
    if o.log_driver or o.log_opt:
        host["LogConfig"] = {"Type": o.log_driver or "",
                             "Config": dict(x.split("=", 1) for x in o.log_opt)}  # fmt: skip
    interactive = o.interactive
    config: dict[str, Any] = {
        "Hostname": o.hostname or "",
        "User": o.user or "",
        "AttachStdin": interactive and not detach if run else interactive or "stdin" in attach,
        "AttachStdout": (not detach) and (not attach or "stdout" in attach),
        "AttachStderr": (not detach) and (not attach or "stderr" in attach),
        "ExposedPorts": exposed or None,
        "Tty": o.tty,
        "OpenStdin": interactive,
        "StdinOnce": interactive and not detach,
        "Env": env_list(o.env, o.env_file),
        "Cmd": o.command or None,
        "Image": o.image,
        "Volumes": volumes or None,
        "WorkingDir": o.workdir or "",
        "Entrypoint": [o.entrypoint] if o.entrypoint is not None else None,
        "Labels": parse_labels(o.label, o.label_file),
    }
    if o.stop_signal:
        config["StopSignal"] = o.stop_signal
    if o.stop_timeout is not None:
        config["StopTimeout"] = o.stop_timeout
    if o.no_healthcheck:
        config["Healthcheck"] = {"Test": ["NONE"]}
    elif o.health_cmd or o.health_interval or o.health_retries:
        hc: dict[str, Any] = {}
        if o.health_cmd:
            hc["Test"] = ["CMD-SHELL", o.health_cmd]
        if o.health_interval:
            hc["Interval"] = duration_ns(o.health_interval)
        if o.health_timeout:
            hc["Timeout"] = duration_ns(o.health_timeout)
        if o.health_start_period:
            hc["StartPeriod"] = duration_ns(o.health_start_period)
        if o.health_retries:
            hc["Retries"] = o.health_retries
        config["Healthcheck"] = hc
    if o.network_alias and o.network:
        config["NetworkingConfig"] = {"EndpointsConfig": {o.network: {"Aliases": o.network_alias}}}
    config["HostConfig"] = {k: v for k, v in host.items() if v is not None}
    return {k: v for k, v in config.items() if v is not None}


def update_body(o: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if o.memory:
        body["Memory"] = ram_in_bytes(o.memory)
    if o.memory_swap:
        body["MemorySwap"] = -1 if o.memory_swap == "-1" else ram_in_bytes(o.memory_swap)
    if o.cpus:
        body["NanoCpus"] = round(float(o.cpus) * 1e9)
    if o.cpu_shares is not None:
        body["CpuShares"] = o.cpu_shares
    if o.cpuset_cpus:
        body["CpusetCpus"] = o.cpuset_cpus
    if o.pids_limit is not None:
        body["PidsLimit"] = o.pids_limit
    if o.restart:
        body["RestartPolicy"] = restart_policy(o.restart)
    return body
