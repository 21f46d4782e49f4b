"""Mount descriptions as snapshotters return them, and the code that
mounts them. Image layer, so that both the unpacker here and
skiff-containerd's snapshotters above can use it.

Overlay lowerdir lists longer than a page do not fit in mount(2)'s data, so
as containerd does we mount from the snapshots directory with relative
paths (`12/fs:11/fs`), in a child process whose working directory is that
directory (chdir in this process would move every thread).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from skiff.errors import Internal, InvalidArgument

MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MNT_DETACH = 0x2
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    type: str
    source: str
    options: Sequence[str] = field(default_factory=tuple)
    target: str = ""

    def to_json(self) -> dict[str, object]:
        return {"type": self.type, "source": self.source, "options": list(self.options)}


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _mount(source: str, target: str, fstype: str, flags: int, data: str) -> None:
    rc = _c().mount(
        os.fsencode(source),
        os.fsencode(target),
        os.fsencode(fstype) if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise Internal(f"mount {fstype or 'bind'} {source} on {target}: {os.strerror(err)}")


def _common_dir(paths: list[str]) -> str:
    common = os.path.commonpath(paths)
    return common


def mount(m: Mount, target: str) -> None:
    opts = list(m.options)
    if m.type == "bind" or "bind" in opts or "rbind" in opts:
        flags = MS_BIND | (MS_REC if "rbind" in opts else 0)
        _mount(m.source, target, "", flags, "")
        if "ro" in opts:
            _mount("", target, "", MS_REMOUNT | MS_BIND | MS_RDONLY | flags, "")
        return
    if m.type != "overlay":
        raise InvalidArgument(f"unsupported mount type {m.type!r}")
    flags = MS_RDONLY if "ro" in opts else 0
    data_opts = [o for o in opts if o not in ("ro", "rw")]
    data = ",".join(data_opts)
    if len(data) < _PAGE - 512:
        _mount("overlay", target, "overlay", flags, data)
        return
    _mount_compact(data_opts, target, "ro" in opts)


def _mount_compact(opts: list[str], target: str, readonly: bool) -> None:
    paths: list[str] = []
    for opt in opts:
        key, _, value = opt.partition("=")
        if key == "lowerdir":
            paths.extend(value.split(":"))
        elif key in ("upperdir", "workdir"):
            paths.append(value)
    base = _common_dir([os.path.dirname(os.path.dirname(p)) for p in paths])
    rel_opts = []
    for opt in opts:
        key, sep, value = opt.partition("=")
        if key == "lowerdir":
            value = ":".join(os.path.relpath(p, base) for p in value.split(":"))
        elif key in ("upperdir", "workdir"):
            value = os.path.relpath(value, base)
        rel_opts.append(f"{key}={value}" if sep else key)
    data = ",".join(rel_opts)
    if len(data) >= _PAGE:
        raise InvalidArgument(f"overlay options too long even with short paths ({len(data)} bytes)")
    cmd = ["mount", "-t", "overlay", "overlay", "-o", data, os.path.abspath(target)]
    if readonly:
        cmd[1:1] = ["-r"]
    proc = subprocess.run(cmd, cwd=base, capture_output=True, text=True)
    if proc.returncode != 0:
        raise Internal(f"mount overlay on {target}: {proc.stderr.strip()}")


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    for m in mounts:
        mount(m, target)


def unmount(target: str, *, detach: bool = False) -> None:
    rc = _c().umount2(os.fsencode(target), ctypes.c_int(MNT_DETACH if detach else 0))
    if rc != 0:
        err = ctypes.get_errno()
        raise Internal(f"unmount {target}: {os.strerror(err)}")
