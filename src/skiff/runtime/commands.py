"""skiff-runc's less frequent commands: spec, features, list, exec, ps, events, update.

Part of the command line (skiff.runtime.cli), kept apart so that the
commands a container's life runs on every start (create, start, delete)
do not load this code: a module's size is paid on each interpreter start.
"""

from __future__ import annotations

import os
import sys

from skiff import __version__
from skiff.runtime.cli import UsageError, _need_id, parse_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import Process, Resources


def spec(flags: dict[str, Any]) -> int:
    from skiff.oci import fastjson
    from skiff.oci.runtime_spec import default_spec

    bundle = flags.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise UsageError("File config.json exists. Remove it first")
    spec = default_spec(bool(flags.get("rootless")), os.getuid(), os.getgid())
    with open(path, "w") as f:
        f.write(fastjson.dumps_indent(spec, "\t"))
    return 0


def features() -> int:
    from skiff.oci import fastjson
    from skiff.runtime import caps, rootfs, seccomp
    from skiff.runtime.config import HOOK_KINDS
    from skiff.runtime.linux import NAMESPACE_FLAGS

    doc = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2-dev",
        "hooks": list(HOOK_KINDS),
        "mountOptions": list(rootfs.MOUNT_OPTIONS),
        "linux": {
            "namespaces": sorted(NAMESPACE_FLAGS),
            "capabilities": list(caps.NAMES),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "seccomp": {
                "enabled": True,
                "actions": list(seccomp.ACTIONS),
                "operators": list(seccomp.OPERATORS),
                "archs": list(seccomp.ARCHES),
            },
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
        },
        "annotations": {
            "org.opencontainers.runc.version": __version__,
            "io.github.skiff.runtime": "skiff-runc",
        },
    }
    sys.stdout.write(fastjson.dumps_indent(doc, "    ") + "\n")
    return 0


def list_(runtime: Any, flags: dict[str, Any]) -> int:
    states = runtime.containers()
    if flags.get("quiet"):
        for s in states:
            sys.stdout.write(s["id"] + "\n")
        return 0
    fmt = flags.get("format", "table")
    if fmt == "json":
        from skiff.oci import fastjson

        sys.stdout.write(fastjson.dumps(states or None, compact=True) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option: {fmt}")
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for s in states:
        rows.append(
            [s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s.get("owner", "")]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        line = "".join(cell.ljust(max(widths[i] + 3, 12)) for i, cell in enumerate(r[:-1]))
        sys.stdout.write(line + r[-1] + "\n")
    return 0


def exec_(runtime: Any, flags: dict[str, Any], rest: list[str], preserve: int) -> int:
    from skiff.oci import fastjson
    from skiff.runtime.state import Container

    cid = _need_id("exec", rest, extra_ok=True)
    container = Container.load(runtime.root, cid)
    process: Process
    if flags.get("process"):
        with open(flags["process"], "rb") as f:
            process = fastjson.loads(f.read())
    else:
        if len(rest) < 2:
            raise UsageError("exec: process args cannot be empty")
        base = container.spec.get("process", {})
        process = {k: v for k, v in base.items()}  # type: ignore[assignment]
        process["args"] = rest[1:]
        process["terminal"] = bool(flags.get("tty"))
        process.pop("consoleSize", None)
        if flags.get("env"):
            process["env"] = list(process.get("env", [])) + list(flags["env"])
        if flags.get("cwd"):
            process["cwd"] = flags["cwd"]
        if flags.get("user"):
            uid, _, gid = flags["user"].partition(":")
            try:
                user: dict[str, Any] = {"uid": int(uid), "gid": int(gid) if gid else 0}
            except ValueError:
                raise UsageError(f"parsing {flags['user']} as uid:gid failed")
            process["user"] = user  # type: ignore[typeddict-item]
        if flags.get("additional-gids"):
            process.setdefault("user", {"uid": 0, "gid": 0})["additionalGids"] = [
                int(g) for g in flags["additional-gids"]
            ]
        if flags.get("no-new-privs"):
            process["noNewPrivileges"] = True
        if flags.get("cap"):
            current: dict[str, list[str]] = dict(process.get("capabilities", {}))  # type: ignore[arg-type]
            capabilities = {k: list(v) for k, v in current.items()}
            for kind in ("bounding", "effective", "permitted", "ambient"):
                capabilities.setdefault(kind, [])
                capabilities[kind].extend(flags["cap"])
            process["capabilities"] = capabilities  # type: ignore[typeddict-item]
    return int(
        runtime.exec(
            cid,
            process,
            pid_file=flags.get("pid-file"),
            console_socket=flags.get("console-socket"),
            detach=bool(flags.get("detach")),
            preserve_fds=preserve,
            ignore_paused=bool(flags.get("ignore-paused")),
            sub_cgroups=list(flags.get("cgroup", [])),
        )
    )


def ps(runtime: Any, flags: dict[str, Any], rest: list[str]) -> int:
    cid = _need_id("ps", rest, extra_ok=True)
    pids = runtime.pids(cid)
    fmt = flags.get("format", "table")
    if fmt == "json":
        from skiff.oci import fastjson

        sys.stdout.write(fastjson.dumps(pids, compact=True) + "\n")
        return 0
    if fmt != "table":
        raise UsageError(f"invalid format option: {fmt}")
    import subprocess

    ps_args = rest[1:] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    if not lines:
        return 0
    header = lines[0]
    try:
        column = header.split().index("PID")
    except ValueError:
        raise UsageError("couldn't find PID field in ps output")
    sys.stdout.write(header + "\n")
    wanted = set(pids)
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in wanted:
            sys.stdout.write(line + "\n")
    return 0


def parse_duration(text: str) -> float:
    """Go's time.Duration text: 100ms, 5s, 1m, 1m30s, 250us."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    rest = text.strip()
    if not rest:
        raise UsageError("invalid duration ''")
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        j = i
        while j < len(rest) and not (rest[j].isdigit() or rest[j] == "."):
            j += 1
        number, unit = rest[:i], rest[i:j]
        if not number or unit not in units:
            raise UsageError(f"invalid duration {text!r}")
        total += float(number) * units[unit]
        rest = rest[j:]
    return total


def events(runtime: Any, flags: dict[str, Any], rest: list[str]) -> int:
    from skiff.oci import fastjson

    cid = _need_id("events", rest)
    if flags.get("stats"):
        sys.stdout.write(fastjson.dumps(runtime.stats(cid), compact=True) + "\n")
        return 0
    import time

    interval = parse_duration(str(flags.get("interval", "5s")))
    if interval <= 0:
        raise UsageError("duration interval must be greater than 0")
    # stats every interval; an "oom" event as soon as the kill counter moves
    oom_seen = runtime.oom_kills(cid)
    next_stats = 0.0
    while True:
        now = time.monotonic()
        try:
            if now >= next_stats:
                sys.stdout.write(fastjson.dumps(runtime.stats(cid), compact=True) + "\n")
                next_stats = now + interval
            kills = runtime.oom_kills(cid)
        except Exception:
            return 0
        if kills > oom_seen:
            sys.stdout.write(fastjson.dumps({"type": "oom", "id": cid}, compact=True) + "\n")
            oom_seen = kills
        sys.stdout.flush()
        time.sleep(min(0.05, interval))


def update(runtime: Any, flags: dict[str, Any], rest: list[str]) -> int:
    from skiff.oci import fastjson

    cid = _need_id("update", rest)
    resources: Resources = {}
    if flags.get("resources"):
        source = flags["resources"]
        if source == "-":
            raw = sys.stdin.read()
        else:
            with open(source) as f:
                raw = f.read()
        resources = fastjson.loads(raw)
    memory: dict[str, int] = dict(resources.get("memory", {}))  # type: ignore[arg-type]
    cpu: dict[str, Any] = dict(resources.get("cpu", {}))
    for flag, key in (
        ("memory", "limit"),
        ("memory-reservation", "reservation"),
        ("memory-swap", "swap"),
        ("kernel-memory", "kernel"),
        ("kernel-memory-tcp", "kernelTCP"),
    ):
        if flag in flags:
            memory[key] = parse_size(flags[flag])
    for flag, key in (
        ("cpu-share", "shares"),
        ("cpu-period", "period"),
        ("cpu-quota", "quota"),
        ("cpu-rt-period", "realtimePeriod"),
        ("cpu-rt-runtime", "realtimeRuntime"),
    ):
        if flag in flags:
            try:
                cpu[key] = int(flags[flag])
            except ValueError:
                raise UsageError(f"invalid value for {flag}: {flags[flag]}")
    for flag, key in (("cpuset-cpus", "cpus"), ("cpuset-mems", "mems")):
        if flag in flags:
            cpu[key] = flags[flag]
    if memory:
        resources["memory"] = memory  # type: ignore[typeddict-item]
    if cpu:
        resources["cpu"] = cpu  # type: ignore[typeddict-item]
    if "pids-limit" in flags:
        resources["pids"] = {"limit": int(flags["pids-limit"])}
    if "blkio-weight" in flags:
        resources["blockIO"] = {"weight": int(flags["blkio-weight"])}
    runtime.update(cid, resources)
    return 0
