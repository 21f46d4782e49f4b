"""The OCI runtime spec of a Docker container: image config + Config + HostConfig.

skiffd builds it and hands it to the supervisor with the containerd container;
the shim gives it to skiff-runc. Docker's defaults: its capability set, the
masked and read-only paths, a private /dev with the usual devices, /dev/shm of
ShmSize, and /etc/hosts, /etc/hostname and /etc/resolv.conf bound from the
container's directory.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from skiff.errors import InvalidArgument
from skiff.oci.runtime_spec import default_spec

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capabilities (moby oci/caps/defaults.go)
DOCKER_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

ALL_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip

# the character devices every container gets (runc's and Docker's allow list)
DEFAULT_DEVICES = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
]

RLIMITS = {
    "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
    "nproc", "rss", "rtprio", "rttime", "sigpending", "stack", "as",
}  # fmt: skip


def normalize_cap(name: str) -> str:
    name = name.upper()
    if name == "ALL":
        return name
    return name if name.startswith("CAP_") else "CAP_" + name


def capabilities(privileged: bool, add: list[str] | None, drop: list[str] | None) -> list[str]:
    if privileged:
        return list(ALL_CAPS)
    caps = list(DOCKER_CAPS)
    adds = [normalize_cap(c) for c in add or []]
    drops = [normalize_cap(c) for c in drop or []]
    for c in adds + drops:
        if c != "ALL" and c not in ALL_CAPS:
            raise InvalidArgument(f"unknown capability: {c!r}")
    if "ALL" in drops:
        caps = []
    else:
        caps = [c for c in caps if c not in drops]
    if "ALL" in adds:
        caps = [c for c in ALL_CAPS if c not in drops or "ALL" in drops]
    else:
        caps += [c for c in adds if c not in caps]
    return caps


def parse_signal(name: str | int | None, default: int = signal.SIGTERM) -> int:
    if name is None or name == "":
        return int(default)
    if isinstance(name, int):
        return name
    text = str(name).upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(signal.Signals[text])
    except KeyError:
        raise InvalidArgument(f"invalid signal: {name}")


def seccomp_from_profile(text: str) -> dict[str, Any]:
    """Docker's seccomp profile JSON (moby/profiles/seccomp) as the spec's linux.seccomp."""
    try:
        prof = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidArgument(f"decoding seccomp profile failed: {e}")
    if not isinstance(prof, dict) or "defaultAction" not in prof:
        raise InvalidArgument("seccomp profile needs a defaultAction")
    arches: list[str] = list(prof.get("architectures") or [])
    for arch in prof.get("archMap") or []:
        arches.append(arch.get("architecture", ""))
        arches += arch.get("subArchitectures") or []
    out: dict[str, Any] = {"defaultAction": prof["defaultAction"]}
    if "defaultErrnoRet" in prof:
        out["defaultErrnoRet"] = prof["defaultErrnoRet"]
    if arches:
        out["architectures"] = [a for a in arches if a]
    syscalls = []
    for rule in prof.get("syscalls") or []:
        names = list(rule.get("names") or [])
        if rule.get("name"):
            names.append(rule["name"])
        entry: dict[str, Any] = {"names": names, "action": rule.get("action", "SCMP_ACT_ALLOW")}
        if rule.get("args"):
            entry["args"] = rule["args"]
        if "errnoRet" in rule:
            entry["errnoRet"] = rule["errnoRet"]
        syscalls.append(entry)
    if syscalls:
        out["syscalls"] = syscalls
    return out


def parse_size(text: str) -> int:
    units = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b") or "0"
    mult = 1
    if t and t[-1] in units:
        mult = units[t[-1]]
        t = t[:-1]
    try:
        return int(float(t) * mult)
    except ValueError:
        raise InvalidArgument(f"invalid size: {text!r}")


def build_spec(
    *,
    cid: str,
    args: list[str],
    env: list[str],
    cwd: str,
    uid: int,
    gid: int,
    additional_gids: list[int],
    config: dict[str, Any],
    host: dict[str, Any],
    container_dir: str,
    mounts: list[dict[str, Any]],
    init_path: str | None,
) -> dict[str, Any]:
    spec: dict[str, Any] = dict(default_spec())
    privileged = bool(host.get("Privileged"))
    tty = bool(config.get("Tty"))
    caps = capabilities(privileged, host.get("CapAdd"), host.get("CapDrop"))
    process: dict[str, Any] = {
        "terminal": tty,
        "user": {"uid": uid, "gid": gid},
        "args": (["/sbin/docker-init", "--", *args]) if init_path else args,
        "env": env,
        "cwd": cwd or "/",
        "capabilities": {
            "bounding": caps,
            "effective": caps,
            "permitted": caps,
        },
        "noNewPrivileges": False,
    }
    if additional_gids:
        process["user"]["additionalGids"] = additional_gids
    size = host.get("ConsoleSize") or [0, 0]
    if tty and len(size) == 2 and size[0] and size[1]:
        # the client's terminal size from the start: a program that reads it at once
        # (stty size, a shell's prompt) does not see 0x0 before the first resize
        process["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
    rlimits = []
    for u in host.get("Ulimits") or []:
        name = str(u.get("Name", "")).lower()
        if name not in RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {name}")
        rlimits.append(
            {
                "type": "RLIMIT_" + name.upper(),
                "soft": int(u.get("Soft", 0)),
                "hard": int(u.get("Hard", 0)),
            }
        )
    if rlimits:
        process["rlimits"] = rlimits
    seccomp: dict[str, Any] | None = None
    for opt in host.get("SecurityOpt") or []:
        key, _sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key == "no-new-privileges":
            process["noNewPrivileges"] = value.lower() in ("", "true", "1")
        elif key == "seccomp":
            if value != "unconfined":
                seccomp = seccomp_from_profile(value)
        elif key in ("apparmor", "label"):
            pass  # no LSM on this host: accepted and ignored, as Docker does without one
        else:
            raise InvalidArgument(f"invalid --security-opt: {opt!r}")
    spec["process"] = process
    spec["hostname"] = config.get("Hostname") or cid[:12]
    if config.get("Domainname"):
        spec["domainname"] = config["Domainname"]
    spec["root"] = {"path": "rootfs", "readonly": bool(host.get("ReadonlyRootfs"))}

    shm = int(host.get("ShmSize") or 64 << 20)
    base_mounts: list[dict[str, Any]] = []
    for m in spec["mounts"]:
        m = dict(m)
        if m["destination"] == "/dev/shm":
            m["options"] = ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]
        if privileged and m["destination"] in ("/sys", "/sys/fs/cgroup"):
            m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
        base_mounts.append(m)
    net_mode = host.get("NetworkMode") or "default"
    for name in ("hostname", "hosts", "resolv.conf"):
        base_mounts.append(
            {
                "destination": f"/etc/{name}",
                "type": "bind",
                "source": os.path.join(container_dir, name),
                "options": ["rbind", "rprivate"],
            }
        )
    if init_path:
        base_mounts.append(
            {
                "destination": "/sbin/docker-init",
                "type": "bind",
                "source": init_path,
                "options": ["bind", "ro"],
            }
        )
    user_dests = {m["destination"] for m in mounts}
    spec["mounts"] = [m for m in base_mounts if m["destination"] not in user_dests] + mounts

    linux: dict[str, Any] = dict(spec["linux"])
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount")]
    if net_mode != "host":
        namespaces.append({"type": "network"})
    if host.get("PidMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "pid"]
    if host.get("IpcMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "ipc"]
    if host.get("UTSMode") == "host":
        namespaces = [n for n in namespaces if n["type"] != "uts"]
    linux["namespaces"] = namespaces
    linux["cgroupsPath"] = f"/skiff/{cid}"
    if privileged:
        linux["maskedPaths"] = []
        linux["readonlyPaths"] = []
    if seccomp is not None and not privileged:
        linux["seccomp"] = seccomp
    linux["resources"] = resources(host)
    if privileged:
        linux["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        linux["devices"] = [
            {
                "path": p,
                "type": "c",
                "major": ma,
                "minor": mi,
                "fileMode": 0o666,
                "uid": 0,
                "gid": 0,
            }
            for p, ma, mi in DEFAULT_DEVICES
        ]
    sysctls = host.get("Sysctls") or {}
    if sysctls:
        linux["sysctl"] = dict(sysctls)
    spec["linux"] = linux
    return spec


def resources(host: dict[str, Any]) -> dict[str, Any]:
    """linux.resources from HostConfig (also what `docker update` sends)."""
    res: dict[str, Any] = {
        "devices": [{"allow": False, "access": "rwm"}]
        + [
            {"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
            for _, ma, mi in DEFAULT_DEVICES
        ]
        + [
            {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},  # ptmx
            {"allow": True, "type": "c", "major": 136, "access": "rwm"},  # pts
        ]
    }
    memory: dict[str, Any] = {}
    if host.get("Memory"):
        memory["limit"] = int(host["Memory"])
        swap = host.get("MemorySwap")
        if swap not in (None, 0):
            memory["swap"] = int(swap)
    if host.get("MemoryReservation"):
        memory["reservation"] = int(host["MemoryReservation"])
    if memory:
        res["memory"] = memory
    cpu: dict[str, Any] = {}
    if host.get("CpuShares"):
        cpu["shares"] = int(host["CpuShares"])
    if host.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = int(host["NanoCpus"]) * 100000 // 1_000_000_000
    if host.get("CpuQuota"):
        cpu["quota"] = int(host["CpuQuota"])
        cpu["period"] = int(host.get("CpuPeriod") or 100000)
    elif host.get("CpuPeriod"):
        cpu["period"] = int(host["CpuPeriod"])
    if host.get("CpusetCpus"):
        cpu["cpus"] = str(host["CpusetCpus"])
    if host.get("CpusetMems"):
        cpu["mems"] = str(host["CpusetMems"])
    if cpu:
        res["cpu"] = cpu
    if host.get("PidsLimit") and int(host["PidsLimit"]) > 0:
        res["pids"] = {"limit": int(host["PidsLimit"])}
    return res
