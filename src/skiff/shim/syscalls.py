"""The few Linux calls skiff-shim needs that Python lacks: prctl, mount, umount2.

The one thin ctypes module of skiff-shim (see DESIGN.md, "System calls go
through one thin module"); everything else in the shim uses os.
"""

from __future__ import annotations

import ctypes
import os

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)

# mount(8) option names that are flags; everything else goes to the data string.
_FLAGS: dict[str, tuple[int, bool]] = {
    "ro": (1, True),
    "rw": (1, False),
    "nosuid": (2, True),
    "suid": (2, False),
    "nodev": (4, True),
    "dev": (4, False),
    "noexec": (8, True),
    "exec": (8, False),
    "sync": (16, True),
    "async": (16, False),
    "remount": (32, True),
    "mand": (64, True),
    "nomand": (64, False),
    "dirsync": (128, True),
    "noatime": (1024, True),
    "atime": (1024, False),
    "nodiratime": (2048, True),
    "diratime": (2048, False),
    "bind": (4096, True),
    "rbind": (4096 | 16384, True),
    "relatime": (1 << 21, True),
    "norelatime": (1 << 21, False),
    "strictatime": (1 << 24, True),
}
MS_BIND = 4096
MS_REMOUNT = 32
MS_RDONLY = 1


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def fork_bare() -> int:
    """fork(2) without Python's at-fork work; only for a single-threaded process.

    os.fork() runs the interpreter's after-fork handlers in the child
    (threading's among them), which write to some 700 KB of pages the child
    would otherwise share with its parent. A single-threaded parent holds no
    lock another thread could have left taken, so there is nothing to reset;
    ctypes releases the GIL for the call and the child takes it back.
    """
    pid = int(_libc.fork())
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid


def set_child_subreaper() -> None:
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def parse_mount_options(options: list[str]) -> tuple[int, str]:
    """Split fstab-style options into mount(2) flags and the data string."""
    flags = 0
    data: list[str] = []
    for opt in options:
        known = _FLAGS.get(opt)
        if known is None:
            data.append(opt)
        elif known[1]:
            flags |= known[0]
        else:
            flags &= ~known[0]
    return flags, ",".join(data)


def mount(source: str, target: str, fstype: str, options: list[str]) -> None:
    flags, data = parse_mount_options(options)
    if fstype == "bind":
        flags |= MS_BIND
    _check(
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype != "bind" else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target} ({fstype})",
    )
    if flags & MS_BIND and flags & MS_RDONLY:
        # a bind mount ignores MS_RDONLY until it is remounted
        _check(
            _libc.mount(None, target.encode(), None, ctypes.c_ulong(flags | MS_REMOUNT), None),
            f"remount {target} read-only",
        )


def unmount(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), f"umount {target}")


PR_SET_MM = 35
PR_SET_MM_MAP = 14
_cmdline_buffers: list[ctypes.Array[ctypes.c_char]] = []  # the kernel points into these


class _MmMap(ctypes.Structure):
    """struct prctl_mm_map of <linux/prctl.h>."""

    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "start_code",
            "end_code",
            "start_data",
            "end_data",
            "start_brk",
            "brk",
            "start_stack",
            "arg_start",
            "arg_end",
            "env_start",
            "env_end",
            "auxv",
        )
    ] + [("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def set_cmdline(argv: list[str]) -> bool:
    """Make /proc/self/cmdline read argv; False if the kernel refuses.

    A forked shim would otherwise show the command line of the process it was
    forked from, to ps and to tools that find shims by their arguments.
    PR_SET_MM_MAP with every other field unchanged needs no capability
    (unlike PR_SET_MM_ARG_START, which needs CAP_SYS_RESOURCE).
    """
    data = b"\0".join(os.fsencode(a) for a in argv) + b"\0"
    buf = ctypes.create_string_buffer(data, len(data))
    with open("/proc/self/stat", "rb") as f:
        # the fields after the ")" that closes comm start at field 3 (man 5 proc)
        fields = f.read().rsplit(b")", 1)[1].split()

    def field(n: int) -> int:
        return int(fields[n - 3])

    sbrk = _libc.sbrk
    sbrk.restype = ctypes.c_void_p
    mm = _MmMap(
        start_code=field(26),
        end_code=field(27),
        start_stack=field(28),
        start_data=field(45),
        end_data=field(46),
        start_brk=field(47),
        brk=sbrk(0) or 0,
        arg_start=ctypes.addressof(buf),
        arg_end=ctypes.addressof(buf) + len(data),
        env_start=field(50),
        env_end=field(51),
        auxv=0,
        auxv_size=0,
        exe_fd=0xFFFFFFFF,  # keep /proc/self/exe
    )
    _cmdline_buffers.append(buf)
    result = _libc.prctl(
        PR_SET_MM,
        ctypes.c_ulong(PR_SET_MM_MAP),
        ctypes.c_void_p(ctypes.addressof(mm)),
        ctypes.c_ulong(ctypes.sizeof(mm)),
        0,
    )
    return bool(result == 0)
