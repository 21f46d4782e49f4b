"""Reading and checking a bundle's config.json before anything is created.

Every check that can fail on the user's input happens here, in the runtime
process, so that a bad config ends with one error line and nothing left
behind (no state directory, cgroup, mount or process).
"""

from __future__ import annotations

import os

from skiff.errors import InvalidArgument, NotFound
from skiff.oci import fastjson
from skiff.runtime import caps
from skiff.runtime.linux import NAMESPACE_FLAGS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import Spec

HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}


def load_bundle(bundle: str) -> tuple[str, Spec]:
    """Return the bundle's absolute path and its checked config."""
    bundle = os.path.abspath(bundle)
    if not os.path.isdir(bundle):
        raise NotFound(f"bundle {bundle} does not exist or is not a directory")
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise NotFound(f"config.json not found in bundle {bundle}")
    try:
        spec = fastjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"config.json is not valid JSON: {e}")
    validate(spec, bundle)
    return bundle, spec


def _type(value: Any, kind: type | tuple[type, ...], where: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise InvalidArgument(f"config.json: {where} must be {names}")


def rootfs_path(bundle: str, spec: Spec) -> str:
    root = spec.get("root", {})
    path = root.get("path", "rootfs")
    return path if os.path.isabs(path) else os.path.join(bundle, path)


def validate(spec: Any, bundle: str) -> None:
    _type(spec, dict, "the document")
    _type(spec.get("ociVersion", ""), str, "ociVersion")
    if "root" not in spec:
        raise InvalidArgument("config.json: root must be set")
    root = spec["root"]
    _type(root, dict, "root")
    _type(root.get("path", ""), str, "root.path")
    if not root.get("path"):
        raise InvalidArgument("config.json: root.path is empty")
    rootfs = rootfs_path(bundle, spec)
    if not os.path.isdir(rootfs):
        raise NotFound(f"rootfs ({rootfs}) does not exist")

    process = spec.get("process")
    if process is None:
        raise InvalidArgument("config.json: process must be set")
    validate_process(process)

    for i, m in enumerate(spec.get("mounts", [])):
        _type(m, dict, f"mounts[{i}]")
        dest = m.get("destination")
        _type(dest, str, f"mounts[{i}].destination")
        if not dest.startswith("/"):
            raise InvalidArgument(f"config.json: mount destination {dest} is not absolute")
        _type(m.get("options", []), list, f"mounts[{i}].options")
    hooks = spec.get("hooks", {})
    _type(hooks, dict, "hooks")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise InvalidArgument(f"config.json: unknown hook kind {kind}")
        for j, hook in enumerate(entries):
            _type(hook.get("path"), str, f"hooks.{kind}[{j}].path")
            if not os.path.isabs(hook["path"]):
                raise InvalidArgument(f"config.json: hook path {hook['path']} is not absolute")
    linux = spec.get("linux", {})
    _type(linux, dict, "linux")
    seen: set[str] = set()
    for ns in linux.get("namespaces", []):
        _type(ns, dict, "linux.namespaces[]")
        kind = ns.get("type")
        if kind not in NAMESPACE_FLAGS:
            raise InvalidArgument(f"config.json: unknown namespace type {kind!r}")
        if kind in seen:
            raise InvalidArgument(f"config.json: duplicate namespace type {kind}")
        seen.add(kind)
        path = ns.get("path")
        if path and not os.path.exists(path):
            raise NotFound(f"namespace path {path} for {kind} does not exist")
    if ("uidMappings" in linux or "gidMappings" in linux) and "user" not in seen:
        raise InvalidArgument("config.json: user mappings given without a user namespace")
    if spec.get("hostname") and "uts" not in seen:
        raise InvalidArgument("config.json: unable to set hostname without a new uts namespace")
    for key in linux.get("sysctl", {}):
        if "/" in key or ".." in key:
            raise InvalidArgument(f"config.json: invalid sysctl {key}")
        _check_sysctl(key, seen)
    seccomp = linux.get("seccomp")
    if seccomp is not None:
        from skiff.runtime import seccomp as seccomp_mod

        seccomp_mod.validate(seccomp)
    propagation = linux.get("rootfsPropagation", "")
    if propagation not in (
        "",
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
        "runbindable",
    ):
        raise InvalidArgument(f"config.json: invalid rootfsPropagation {propagation}")
    cgroups_path = linux.get("cgroupsPath", "")
    _type(cgroups_path, str, "linux.cgroupsPath")
    if ":" in cgroups_path:
        raise InvalidArgument(
            f"config.json: cgroupsPath {cgroups_path} is a systemd slice path; "
            "systemd cgroups are not supported"
        )


_IPC_SYSCTLS = {
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
}


def _check_sysctl(key: str, namespaces: set[str]) -> None:
    """A sysctl must belong to a namespace of the container's own, as runc checks."""
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        needed = "ipc"
    elif key.startswith("net."):
        needed = "network"
    elif key in ("kernel.hostname", "kernel.domainname"):
        needed = "uts"
    else:
        raise InvalidArgument(f"sysctl {key!r} is not in a separate kernel namespace")
    if needed not in namespaces:
        raise InvalidArgument(
            f"sysctl {key!r} is not allowed as it conflicts with the host's {needed} namespace"
        )


def validate_process(process: Any) -> None:
    _type(process, dict, "process")
    args = process.get("args")
    if not args:
        raise InvalidArgument("config.json: process.args must not be empty")
    _type(args, list, "process.args")
    for a in args:
        _type(a, str, "process.args[]")
    for e in process.get("env", []):
        _type(e, str, "process.env[]")
        if "=" not in e:
            raise InvalidArgument(f"config.json: env entry {e!r} has no '='")
    cwd = process.get("cwd", "/")
    _type(cwd, str, "process.cwd")
    if not cwd.startswith("/"):
        raise InvalidArgument(f"config.json: process.cwd {cwd} is not absolute")
    user = process.get("user", {})
    _type(user, dict, "process.user")
    for key in ("uid", "gid"):
        _type(user.get(key, 0), int, f"process.user.{key}")
    for g in user.get("additionalGids", []):
        _type(g, int, "process.user.additionalGids[]")
    capabilities = process.get("capabilities", {})
    _type(capabilities, dict, "process.capabilities")
    for kind, names in capabilities.items():
        if kind not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
            raise InvalidArgument(f"config.json: unknown capability set {kind}")
        caps.mask(names)  # raises for an unknown name
    for r in process.get("rlimits", []):
        if r.get("type") not in RLIMITS:
            raise InvalidArgument(f"config.json: unknown rlimit type {r.get('type')!r}")
        _type(r.get("hard"), int, "rlimits[].hard")
        _type(r.get("soft"), int, "rlimits[].soft")
    if "oomScoreAdj" in process:
        _type(process["oomScoreAdj"], int, "process.oomScoreAdj")
        if not -1000 <= process["oomScoreAdj"] <= 1000:
            raise InvalidArgument("config.json: process.oomScoreAdj out of range")
