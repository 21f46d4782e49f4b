"""The container's filesystem, set up inside its new mount namespace by init.

Mount destinations are resolved inside the rootfs with symlinks followed as
if the rootfs were /, never with plain joins (a symlink in an image may point
anywhere). Order follows runc: propagation, rootfs bind, mounts, devices,
(createContainer hooks by the caller), pivot_root; then read-only root,
read-only and masked paths after the console is set up.
"""

from __future__ import annotations

import os
import stat

from skiff.runtime import linux

TYPE_CHECKING = False
if TYPE_CHECKING:
    from skiff.oci.runtime_spec import Device, Mount, Spec

# option -> (clear, flag)
_FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, linux.MS_SYNCHRONOUS),
    "atime": (True, linux.MS_NOATIME),
    "bind": (False, linux.MS_BIND),
    "defaults": (False, 0),
    "dev": (True, linux.MS_NODEV),
    "diratime": (True, linux.MS_NODIRATIME),
    "dirsync": (False, linux.MS_DIRSYNC),
    "exec": (True, linux.MS_NOEXEC),
    "mand": (False, linux.MS_MANDLOCK),
    "noatime": (False, linux.MS_NOATIME),
    "nodev": (False, linux.MS_NODEV),
    "nodiratime": (False, linux.MS_NODIRATIME),
    "noexec": (False, linux.MS_NOEXEC),
    "nomand": (True, linux.MS_MANDLOCK),
    "norelatime": (True, linux.MS_RELATIME),
    "nostrictatime": (True, linux.MS_STRICTATIME),
    "nosuid": (False, linux.MS_NOSUID),
    "nosymfollow": (False, linux.MS_NOSYMFOLLOW),
    "symfollow": (True, linux.MS_NOSYMFOLLOW),
    "rbind": (False, linux.MS_BIND | linux.MS_REC),
    "relatime": (False, linux.MS_RELATIME),
    "remount": (False, linux.MS_REMOUNT),
    "ro": (False, linux.MS_RDONLY),
    "rw": (True, linux.MS_RDONLY),
    "silent": (False, linux.MS_SILENT),
    "loud": (True, linux.MS_SILENT),
    "strictatime": (False, linux.MS_STRICTATIME),
    "suid": (True, linux.MS_NOSUID),
    "sync": (False, linux.MS_SYNCHRONOUS),
    "lazytime": (False, linux.MS_LAZYTIME),
    "nolazytime": (True, linux.MS_LAZYTIME),
    # recursive attributes need mount_setattr; applied to the top mount only
    "rro": (False, linux.MS_RDONLY),
    "rrw": (True, linux.MS_RDONLY),
    "rnosuid": (False, linux.MS_NOSUID),
    "rnodev": (False, linux.MS_NODEV),
    "rnoexec": (False, linux.MS_NOEXEC),
}
_PROPAGATION = {
    "private": linux.MS_PRIVATE,
    "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED,
    "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE,
    "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE,
    "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}
# options that runc accepts but that need no flag here
_IGNORED = {
    "tmpcopyup",
    "acl",
    "noacl",
    "iversion",
    "noiversion",
    "rsuid",
    "rdev",
    "rexec",
    "ratime",
    "rnoatime",
    "rdiratime",
    "rnodiratime",
    "rrelatime",
    "rnorelatime",
    "rstrictatime",
    "rnostrictatime",
    "rsymfollow",
    "rnosymfollow",
}

MOUNT_OPTIONS = tuple(sorted(set(_FLAGS) | set(_PROPAGATION) | _IGNORED))

# recursive options -> (set, clear) mount attributes for mount_setattr(AT_RECURSIVE)
_RECURSIVE = {
    "rro": (linux.MOUNT_ATTR_RDONLY, 0),
    "rrw": (0, linux.MOUNT_ATTR_RDONLY),
    "rnosuid": (linux.MOUNT_ATTR_NOSUID, 0),
    "rsuid": (0, linux.MOUNT_ATTR_NOSUID),
    "rnodev": (linux.MOUNT_ATTR_NODEV, 0),
    "rdev": (0, linux.MOUNT_ATTR_NODEV),
    "rnoexec": (linux.MOUNT_ATTR_NOEXEC, 0),
    "rexec": (0, linux.MOUNT_ATTR_NOEXEC),
}


def recursive_attrs(options: list[str]) -> tuple[int, int]:
    attr_set = attr_clr = 0
    for opt in options:
        if opt in _RECURSIVE:
            add, clear = _RECURSIVE[opt]
            attr_set = (attr_set | add) & ~clear
            attr_clr = (attr_clr | clear) & ~add
    return attr_set, attr_clr


DEFAULT_DEVICES: list[Device] = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7, "fileMode": 0o666},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8, "fileMode": 0o666},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9, "fileMode": 0o666},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0, "fileMode": 0o666},
]


def parse_options(options: list[str]) -> tuple[int, int, str]:
    """Return (mount flags, propagation flags, data string)."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        elif opt in _IGNORED:
            continue
        else:
            data.append(opt)
    return flags, propagation, ",".join(data)


def secure_join(root: str, unsafe: str) -> str:
    """Resolve `unsafe` inside `root`, following symlinks as if root were /."""
    parts = [p for p in unsafe.split("/") if p]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = [*resolved, part]
        full = root + "/" + "/".join(candidate)
        try:
            st = os.lstat(full)
        except FileNotFoundError:
            resolved = candidate
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > 255:
                raise OSError(40, f"too many symlinks resolving {unsafe}")
            target = os.readlink(full)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved = candidate
    return root + "/" + "/".join(resolved) if resolved else root


def _mkdir_all(path: str) -> None:
    os.makedirs(path, 0o755, exist_ok=True)


def _touch(path: str) -> None:
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if not os.path.exists(path):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))


class Context:
    """What init needs to know about the host side while it builds the rootfs."""

    def __init__(
        self,
        bundle: str,
        rootfs: str,
        spec: Spec,
        userns: bool,
        cgroupns: bool,
        cgroup_dirs: dict[str, str],
        unified: bool,
        mount_fds: dict[int, int] | None = None,
    ):
        self.bundle = bundle
        self.rootfs = rootfs
        self.spec = spec
        self.userns = userns
        self.cgroupns = cgroupns
        self.cgroup_dirs = cgroup_dirs  # v1 controller (or '' for v2) -> host directory
        self.unified = unified
        # bind sources the runtime opened for us (mount index -> O_PATH fd)
        self.mount_fds = mount_fds or {}


def bind_sources(bundle: str, spec: Spec) -> dict[int, str]:
    """The absolute source path of every bind mount, by mount index."""
    sources: dict[int, str] = {}
    for i, m in enumerate(spec.get("mounts", [])):
        flags, _, _ = parse_options(m.get("options", []))
        if m.get("type") == "bind" or flags & linux.MS_BIND:
            source = m.get("source", "")
            sources[i] = source if os.path.isabs(source) else os.path.join(bundle, source)
    return sources


def prepare(ctx: Context) -> None:
    """Everything up to (not including) pivot_root."""
    linux_cfg = ctx.spec.get("linux", {})
    propagation = linux_cfg.get("rootfsPropagation", "")
    flag = _PROPAGATION.get(propagation, linux.MS_SLAVE | linux.MS_REC)
    if flag & (linux.MS_SHARED | linux.MS_UNBINDABLE):
        flag = linux.MS_SLAVE | linux.MS_REC  # set on the new root after pivot
    linux.mount(None, "/", None, flag)
    # the rootfs must be a mount point for pivot_root
    linux.mount(ctx.rootfs, ctx.rootfs, "bind", linux.MS_BIND | linux.MS_REC)
    has_dev = False
    for i, m in enumerate(ctx.spec.get("mounts", [])):
        if os.path.normpath(m["destination"]) == "/dev":
            has_dev = True
        mount_entry(ctx, m, ctx.mount_fds.get(i, -1))
    create_devices(ctx, has_dev)


def mount_entry(ctx: Context, m: Mount, source_fd: int = -1) -> None:
    kind = m.get("type", "")
    source = m.get("source", "")
    flags, propagation, data = parse_options(m.get("options", []))
    if kind in ("proc", "sysfs"):
        raw = ctx.rootfs + "/" + m["destination"].strip("/")
        if os.path.islink(raw):
            raise OSError(
                f"{m['destination']} cannot be mounted because it is a symlink: "
                f"{kind} must be mounted on ordinary directory"
            )
    if os.path.normpath(m["destination"]) == "/dev" and flags & linux.MS_RDONLY:
        flags &= ~linux.MS_RDONLY  # devices go in first; finalize() makes /dev read-only
    dest = secure_join(ctx.rootfs, m["destination"])
    if kind == "bind" or flags & linux.MS_BIND:
        if not os.path.isabs(source):
            source = os.path.join(ctx.bundle, source)
        if source_fd >= 0:
            source = f"/proc/self/fd/{source_fd}"
        if not os.path.exists(source):
            raise FileNotFoundError(f"bind mount source {source} does not exist")
        if os.path.isdir(source):
            _mkdir_all(dest)
        else:
            _touch(dest)
        linux.mount(source, dest, "bind", flags & (linux.MS_BIND | linux.MS_REC))
        rest = flags & ~(linux.MS_BIND | linux.MS_REC | linux.MS_REMOUNT)
        if rest:
            linux.mount(source, dest, None, rest | linux.MS_BIND | linux.MS_REMOUNT)
    elif kind == "cgroup":
        mount_cgroup(ctx, dest, flags)
    else:
        _mkdir_all(dest)
        try:
            linux.mount(source or kind, dest, kind or None, flags, data)
        except PermissionError:
            # sysfs in a user namespace without its own network namespace: bind it
            if kind == "sysfs":
                linux.mount("/sys", dest, "bind", linux.MS_BIND | linux.MS_REC)
            else:
                raise
    attr_set, attr_clr = recursive_attrs(m.get("options", []))
    if attr_set or attr_clr:
        linux.mount_setattr_recursive(dest, attr_set, attr_clr)
    if propagation:
        linux.mount(None, dest, None, propagation)


def mount_cgroup(ctx: Context, dest: str, flags: int) -> None:
    _mkdir_all(dest)
    if ctx.unified:
        if ctx.cgroupns:
            linux.mount("cgroup", dest, "cgroup2", flags)
        else:
            source = ctx.cgroup_dirs.get("", "/sys/fs/cgroup")
            linux.mount(source, dest, "bind", linux.MS_BIND | linux.MS_REC)
            if flags & linux.MS_RDONLY:
                linux.mount(source, dest, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
        return
    base_flags = flags & ~linux.MS_RDONLY
    linux.mount("tmpfs", dest, "tmpfs", base_flags, "mode=755")
    for controller, host_dir in ctx.cgroup_dirs.items():
        sub = os.path.join(dest, controller)
        os.mkdir(sub, 0o755)
        if ctx.cgroupns and controller == "unified":
            linux.mount("cgroup2", sub, "cgroup2", flags)
        elif ctx.cgroupns:
            linux.mount("cgroup", sub, "cgroup", flags, controller)
        else:
            linux.mount(host_dir, sub, "bind", linux.MS_BIND | linux.MS_REC)
            if flags & linux.MS_RDONLY:
                linux.mount(host_dir, sub, None, linux.MS_BIND | linux.MS_REMOUNT | flags)
    if flags & linux.MS_RDONLY:
        linux.mount("tmpfs", dest, None, linux.MS_REMOUNT | flags, "mode=755")


def create_devices(ctx: Context, has_dev: bool) -> None:
    dev = secure_join(ctx.rootfs, "/dev")
    _mkdir_all(dev)
    devices = list(DEFAULT_DEVICES)
    configured = ctx.spec.get("linux", {}).get("devices", [])
    paths = {d["path"] for d in configured}
    devices = [d for d in devices if d["path"] not in paths] + list(configured)
    old_umask = os.umask(0)
    try:
        for d in devices:
            create_device(ctx, d)
    finally:
        os.umask(old_umask)
    links = {
        "fd": "/proc/self/fd",
        "stdin": "/proc/self/fd/0",
        "stdout": "/proc/self/fd/1",
        "stderr": "/proc/self/fd/2",
        "ptmx": "pts/ptmx",
    }
    if any(m.get("type") == "proc" for m in ctx.spec.get("mounts", [])):
        links["core"] = "/proc/kcore"
    for name, target in links.items():
        path = os.path.join(dev, name)
        if name == "ptmx" and os.path.lexists(path) and not os.path.islink(path):
            os.unlink(path)
        if not os.path.lexists(path):
            os.symlink(target, path)


def create_device(ctx: Context, d: Device) -> None:
    path = secure_join(ctx.rootfs, d["path"])
    kind = d.get("type", "c")
    mode = d.get("fileMode", 0o666) & 0o7777
    os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
    if ctx.userns:
        # mknod is refused in a user namespace: bind the host's node instead
        _touch(path)
        linux.mount(d["path"], path, "bind", linux.MS_BIND)
        return
    if os.path.lexists(path):
        os.unlink(path)
    fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
    os.mknod(path, fmt | mode, os.makedev(d.get("major", 0), d.get("minor", 0)))
    os.chown(path, d.get("uid", 0), d.get("gid", 0))


def pivot(rootfs: str, no_pivot: bool) -> None:
    os.chdir(rootfs)
    if no_pivot:
        _hide_host_mounts(rootfs)
        linux.mount(rootfs, "/", None, linux.MS_MOVE)
        os.chroot(".")
        os.chdir("/")
        return
    # pivot_root(".", ".") stacks the old root under the new one; detach it
    linux.pivot_root(".", ".")
    linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def _hide_host_mounts(rootfs: str) -> None:
    """Without pivot_root the host's mounts stay below the new root: detach them, so
    that no fully visible /proc or /sys lets the container mount a fresh one."""
    points: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point != "/" and point != rootfs and not point.startswith(rootfs + "/"):
                points.append(point)
    for point in sorted(set(points), key=len, reverse=True):
        if rootfs.startswith(point + "/"):
            continue  # a parent of the rootfs
        try:
            linux.umount2(point, linux.MNT_DETACH)
        except OSError:
            try:
                linux.mount("tmpfs", point, "tmpfs", linux.MS_RDONLY)
            except OSError:
                pass


def finalize(spec: Spec) -> None:
    """After pivot_root: root propagation, read-only /dev and root."""
    for m in spec.get("mounts", []):
        if os.path.normpath(m["destination"]) == "/dev" and "ro" in m.get("options", []):
            linux.mount(
                None,
                "/dev",
                None,
                linux.MS_REMOUNT | linux.MS_RDONLY | parse_options(m.get("options", []))[0],
            )
    propagation = spec.get("linux", {}).get("rootfsPropagation", "")
    if propagation in ("shared", "rshared", "unbindable", "runbindable"):
        linux.mount(None, "/", None, _PROPAGATION[propagation])
    if spec.get("root", {}).get("readonly"):
        linux.mount(
            None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | _locked_flags("/")
        )


def _locked_flags(path: str) -> int:
    """The flags a bind remount must keep (nosuid/nodev/noexec of the mount)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    flags = 0
    if st.f_flag & os.ST_NOSUID:
        flags |= linux.MS_NOSUID
    if st.f_flag & os.ST_NODEV:
        flags |= linux.MS_NODEV
    if st.f_flag & os.ST_NOEXEC:
        flags |= linux.MS_NOEXEC
    return flags


def readonly_path(path: str) -> None:
    try:
        linux.mount(path, path, "bind", linux.MS_BIND | linux.MS_REC)
    except FileNotFoundError:
        return
    linux.mount(
        path,
        path,
        None,
        linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC | _locked_flags(path),
    )


def mask_path(path: str) -> None:
    try:
        if os.path.isdir(path):
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        else:
            linux.mount("/dev/null", path, "bind", linux.MS_BIND)
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        pass
