"""Linux capabilities: names, masks, and applying the five sets to a process."""

from __future__ import annotations

from skiff.errors import InvalidArgument
from skiff.runtime import linux

NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}


def number(name: str) -> int:
    key = name.upper()
    if not key.startswith("CAP_"):
        key = "CAP_" + key
    try:
        return NUMBERS[key]
    except KeyError:
        raise InvalidArgument(f"unknown capability {name!r}")


def mask(names: list[str]) -> int:
    result = 0
    for name in names:
        result |= 1 << number(name)
    return result


def apply_bounding(bounding: int) -> None:
    """Drop every capability not in `bounding` from the bounding set."""
    for cap in range(linux.last_cap() + 1):
        if not bounding & (1 << cap):
            try:
                linux.prctl(linux.PR_CAPBSET_DROP, cap)
            except OSError:
                # a capability the kernel does not know: nothing to drop
                pass


def apply(sets: dict[str, list[str]]) -> None:
    """Set effective, permitted and inheritable, then raise the ambient ones."""
    limit = (1 << (linux.last_cap() + 1)) - 1
    effective = mask(sets.get("effective", [])) & limit
    permitted = mask(sets.get("permitted", [])) & limit
    inheritable = mask(sets.get("inheritable", [])) & limit
    ambient = mask(sets.get("ambient", [])) & limit
    linux.capset(effective, permitted, inheritable)
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in range(linux.last_cap() + 1):
        if ambient & (1 << cap):
            try:
                linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)
            except OSError:
                # runc ignores an ambient capability that is not permitted+inheritable
                pass
