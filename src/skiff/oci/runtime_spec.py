"""OCI runtime-spec config.json, field for field, and the default spec.

The types are TypedDicts seen only by the type checker: at run time a
config is the plain dict that JSON gave, so the runtime's start-up imports
neither typing nor dataclasses (each costs milliseconds on the path to the
container's execve; see DESIGN.md, "Where the time goes").
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from typing import Any, TypedDict

    class User(TypedDict, total=False):
        uid: int
        gid: int
        umask: int
        additionalGids: list[int]
        username: str

    class ConsoleSize(TypedDict):
        height: int
        width: int

    class Capabilities(TypedDict, total=False):
        bounding: list[str]
        effective: list[str]
        inheritable: list[str]
        permitted: list[str]
        ambient: list[str]

    class Rlimit(TypedDict):
        type: str
        hard: int
        soft: int

    class Process(TypedDict, total=False):
        terminal: bool
        consoleSize: ConsoleSize
        user: User
        args: list[str]
        env: list[str]
        cwd: str
        capabilities: Capabilities
        rlimits: list[Rlimit]
        noNewPrivileges: bool
        apparmorProfile: str
        oomScoreAdj: int
        selinuxLabel: str

    class Root(TypedDict, total=False):
        path: str
        readonly: bool

    class Mount(TypedDict, total=False):
        destination: str
        type: str
        source: str
        options: list[str]

    class Hook(TypedDict, total=False):
        path: str
        args: list[str]
        env: list[str]
        timeout: int

    class Hooks(TypedDict, total=False):
        prestart: list[Hook]
        createRuntime: list[Hook]
        createContainer: list[Hook]
        startContainer: list[Hook]
        poststart: list[Hook]
        poststop: list[Hook]

    class Namespace(TypedDict, total=False):
        type: str
        path: str

    class IDMapping(TypedDict):
        containerID: int
        hostID: int
        size: int

    class Device(TypedDict, total=False):
        type: str
        path: str
        major: int
        minor: int
        fileMode: int
        uid: int
        gid: int

    class DeviceRule(TypedDict, total=False):
        allow: bool
        type: str
        major: int
        minor: int
        access: str

    class Memory(TypedDict, total=False):
        limit: int
        reservation: int
        swap: int
        kernel: int
        kernelTCP: int
        swappiness: int
        disableOOMKiller: bool

    class CPU(TypedDict, total=False):
        shares: int
        quota: int
        period: int
        realtimeRuntime: int
        realtimePeriod: int
        cpus: str
        mems: str
        idle: int

    class Pids(TypedDict, total=False):
        limit: int

    class Resources(TypedDict, total=False):
        devices: list[DeviceRule]
        memory: Memory
        cpu: CPU
        pids: Pids
        blockIO: dict[str, Any]
        hugepageLimits: list[dict[str, Any]]
        network: dict[str, Any]
        unified: dict[str, str]

    class SeccompArg(TypedDict, total=False):
        index: int
        value: int
        valueTwo: int
        op: str

    class SeccompSyscall(TypedDict, total=False):
        names: list[str]
        action: str
        errnoRet: int
        args: list[SeccompArg]

    class Seccomp(TypedDict, total=False):
        defaultAction: str
        defaultErrnoRet: int
        architectures: list[str]
        flags: list[str]
        listenerPath: str
        syscalls: list[SeccompSyscall]

    class Linux(TypedDict, total=False):
        namespaces: list[Namespace]
        uidMappings: list[IDMapping]
        gidMappings: list[IDMapping]
        devices: list[Device]
        cgroupsPath: str
        resources: Resources
        rootfsPropagation: str
        seccomp: Seccomp
        sysctl: dict[str, str]
        maskedPaths: list[str]
        readonlyPaths: list[str]
        mountLabel: str

    class Spec(TypedDict, total=False):
        ociVersion: str
        process: Process
        root: Root
        hostname: str
        domainname: str
        mounts: list[Mount]
        hooks: Hooks
        annotations: dict[str, str]
        linux: Linux

else:
    Spec = dict

OCI_VERSION = "1.0.2-dev"

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]

DEFAULT_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]

DEFAULT_READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]


def default_spec(rootless: bool = False, uid: int = 0, gid: int = 0) -> Spec:
    """The config.json that `spec` writes: the same content as runc's."""
    spec: Spec = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "ambient": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    if rootless:
        linux = spec["linux"]
        mounts = spec["mounts"]
        mounts[2]["options"] = [o for o in mounts[2].get("options", []) if o != "gid=5"]
        mounts[5] = {
            "destination": "/sys",
            "type": "none",
            "source": "/sys",
            "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
        }
        del linux["resources"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
        linux["namespaces"] = [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "user"},
        ]
    return spec
