"""Starting a container's init and exec'd processes, as runc's init does.

The runtime process (P) forks a child (A) which joins or creates the
namespaces and forks again (B), so that B is pid 1 of a new pid namespace;
A then exits and B is reparented to the nearest subreaper (the shim). Every
process here is freshly forked and single-threaded: no thread, asyncio loop
or gRPC channel exists where unshare/setns is called.

P and its children talk over two pipes with one JSON message a line:
  A -> P  {"type": "idmap"}        after unshare(CLONE_NEWUSER); P writes the maps
  A -> P  {"type": "pid", ...}     B's pid as the host sees it; P answers "continue",
                                   which B waits for, so nothing of B's overtakes it
  B -> P  {"type": "hooks"}        before pivot_root; P runs prestart/createRuntime
  B -> P  {"type": "ready"}        set up, waiting on the exec FIFO (or about to exec)
  * -> P  {"type": "error", ...}   the set-up failed; the message is shown to the user
"""

from __future__ import annotations

# imported before any fork: after pivot_root or setns(mnt) the host's
# standard library is out of reach
import fcntl
import os
import resource
import struct

from skiff.oci import fastjson
from skiff.runtime import caps, linux, rootfs
from skiff.runtime.config import RLIMITS
from skiff.runtime.sig import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from skiff.oci.runtime_spec import Process, Spec

TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCSWINSZ = 0x5414


class SetupError(Exception):
    """The container's process could not be set up (reported by the child)."""


class Channel:
    """Both ends of the P <-> child pipes; each side closes the ends it does not use."""

    def __init__(self) -> None:
        self.down_r, self.down_w = os.pipe2(os.O_CLOEXEC)  # P -> child
        self.up_r, self.up_w = os.pipe2(os.O_CLOEXEC)  # child -> P
        self._buf = b""

    def parent_side(self) -> None:
        os.close(self.down_r)
        os.close(self.up_w)

    def child_side(self) -> None:
        os.close(self.down_w)
        os.close(self.up_r)

    def close_parent(self) -> None:
        for fd in (self.down_w, self.up_r):
            try:
                os.close(fd)
            except OSError:
                pass

    def send(self, msg: dict[str, Any], up: bool) -> None:
        data = (fastjson.dumps(msg, compact=True) + "\n").encode()
        os.write(self.up_w if up else self.down_w, data)

    def recv(self, up: bool) -> dict[str, Any] | None:
        fd = self.up_r if up else self.down_r
        while b"\n" not in self._buf:
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        msg: dict[str, Any] = fastjson.loads(line)
        return msg


class InitJob:
    """Everything init needs, fixed before the fork (the child inherits it)."""

    def __init__(
        self,
        *,
        container_id: str,
        spec: Spec,
        bundle: str,
        rootfs_path: str,
        fifo_fd: int,
        console_fd: int | None,
        no_pivot: bool,
        preserve_fds: int,
        cgroup_dirs: dict[str, str],
        unified: bool,
    ):
        self.id = container_id
        self.spec = spec
        self.bundle = bundle
        self.rootfs = rootfs_path
        self.fifo_fd = fifo_fd  # O_PATH, opened by P: the state dir may be closed to init
        # bind sources (mount index -> absolute path) that init, inside a user namespace,
        # may be unable to reach: P opens them in init's mount namespace and passes the fds
        self.bind_sources: dict[int, str] = {}
        self.fd_sock: tuple[int, int] | None = None
        self.mount_fds: dict[int, int] = {}
        self.console_fd = console_fd
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup_dirs = cgroup_dirs
        self.unified = unified


def _namespaces(spec: Spec) -> tuple[int, list[tuple[str, str]]]:
    """The flags of new namespaces, and (type, path) of those to join."""
    flags = 0
    joins: list[tuple[str, str]] = []
    for ns in spec.get("linux", {}).get("namespaces", []):
        if ns.get("path"):
            joins.append((ns["type"], ns["path"]))
        else:
            flags |= linux.NAMESPACE_FLAGS[ns["type"]]
    return flags, joins


def _join(joins: list[tuple[str, str]]) -> None:
    """setns into each path: the user namespace first, the mount namespace last."""
    order = {"user": 0, "mount": 2}
    opened = [
        (kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC))
        for kind, path in sorted(joins, key=lambda j: order.get(j[0], 1))
    ]
    for kind, fd in opened:
        try:
            linux.setns(fd, linux.NAMESPACE_FLAGS[kind])
        except OSError as e:
            raise SetupError(f"failed to join {kind} namespace: {e.strerror}")
        finally:
            os.close(fd)


def _child_fail(chan: Channel, exc: BaseException) -> NoReturn:
    try:
        msg = (
            str(exc)
            if not isinstance(exc, OSError) or not exc.filename
            else (f"{exc.strerror}: {exc.filename}")
        )
        msg = msg or type(exc).__name__
        try:
            chan.send({"type": "error", "message": msg}, up=True)
        except OSError:
            # the runtime has already exited (after "ready"): stderr is all that is left
            os.write(2, f"skiff-runc init: {msg}\n".encode())
    finally:
        os._exit(1)


def preload(spec: Spec, process: Process) -> None:
    """Import, before any fork, what the child will need after the host is gone."""
    if process.get("terminal") or spec.get("linux", {}).get("uidMappings"):
        import _socket  # noqa: F401
    if spec.get("linux", {}).get("seccomp"):
        from skiff.runtime import seccomp as seccomp_mod

        seccomp_mod.preload()
    if spec.get("hooks"):
        from skiff.runtime import hooks  # noqa: F401


# --- the container's init (create) -----------------------------------------------------


def spawn_init(
    job: InitJob,
    chan: Channel,
    on_child: Callable[[int], None],
    on_idmap: Callable[[int], None],
    on_hooks: Callable[[int], None],
    on_mount_sources: Callable[[int], list[int]] | None = None,
) -> int:
    """Fork init; returns B's pid once it waits on the exec FIFO."""
    preload(job.spec, job.spec.get("process", {}))
    a_pid = os.fork()
    if a_pid == 0:
        try:
            chan.child_side()
            _stage_a(job, chan)
        except BaseException as e:
            _child_fail(chan, e)
        os._exit(0)
    chan.parent_side()
    b_pid = 0
    try:
        on_child(a_pid)
        chan.send({"type": "go"}, up=False)
        while True:
            msg = chan.recv(up=True)
            if msg is None:
                raise SetupError("container init exited before it was ready")
            kind = msg.get("type")
            if kind == "idmap":
                on_idmap(a_pid)
                chan.send({"type": "idmap-done"}, up=False)
            elif kind == "mountsources" and job.fd_sock and on_mount_sources:
                fds = on_mount_sources(a_pid)
                try:
                    _send_fds(job.fd_sock[0], fds)
                finally:
                    for fd in fds:
                        os.close(fd)
            elif kind == "pid":
                b_pid = int(msg["pid"])
                os.waitpid(a_pid, 0)
                a_pid = 0
                # B waits for this: no message of B's may overtake A's pid
                chan.send({"type": "continue"}, up=False)
            elif kind == "hooks":
                on_hooks(b_pid)
                chan.send({"type": "hooks-done"}, up=False)
            elif kind == "ready":
                return b_pid
            elif kind == "error":
                raise SetupError(str(msg.get("message")))
    except BaseException:
        for pid in (a_pid, b_pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if a_pid:
            try:
                os.waitpid(a_pid, 0)
            except ChildProcessError:
                pass
        raise
    finally:
        chan.close_parent()


def _stage_a(job: InitJob, chan: Channel) -> None:
    if chan.recv(up=False) is None:
        os._exit(1)
    flags, joins = _namespaces(job.spec)
    user_joins = [j for j in joins if j[0] == "user"]
    _join(user_joins)
    if flags & linux.CLONE_NEWUSER:
        linux.unshare(linux.CLONE_NEWUSER)
        chan.send({"type": "idmap"}, up=True)
        if chan.recv(up=False) is None:
            os._exit(1)
    if flags & linux.CLONE_NEWUSER or user_joins:
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
    _join([j for j in joins if j[0] != "user"])
    rest = flags & ~linux.CLONE_NEWUSER
    if rest:
        linux.unshare(rest)
    if job.bind_sources and job.fd_sock and rest & linux.CLONE_NEWNS:
        chan.send({"type": "mountsources"}, up=True)
        fds = _recv_fds(job.fd_sock[1], len(job.bind_sources))
        job.mount_fds = dict(zip(sorted(job.bind_sources), fds, strict=True))
    b_pid = os.fork()
    if b_pid == 0:
        try:
            _stage_b(job, chan, flags, joins)
        except BaseException as e:
            _child_fail(chan, e)
        os._exit(1)
    chan.send({"type": "pid", "pid": b_pid}, up=True)
    os._exit(0)


def _stage_b(job: InitJob, chan: Channel, flags: int, joins: list[tuple[str, str]]) -> None:
    if chan.recv(up=False) is None:
        os._exit(1)
    spec = job.spec
    process = spec.get("process", {})
    linux_cfg = spec.get("linux", {})
    # nothing in the container may reach this interpreter through /proc/<pid>/exe
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    os.setsid()
    fifo_fd = job.fifo_fd
    # the host's /proc is still mounted: it names us by our host pid, as hooks expect
    host_pid = int(os.readlink("/proc/self"))
    if "oomScoreAdj" in process:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(process["oomScoreAdj"]))
    new_mnt = bool(flags & linux.CLONE_NEWNS)
    userns = bool(flags & linux.CLONE_NEWUSER) or any(k == "user" for k, _ in joins)
    if new_mnt:
        ctx = rootfs.Context(
            job.bundle,
            job.rootfs,
            spec,
            userns,
            bool(flags & linux.CLONE_NEWCGROUP),
            job.cgroup_dirs,
            job.unified,
            job.mount_fds,
        )
        rootfs.prepare(ctx)
    hooks = spec.get("hooks", {})
    if hooks.get("prestart") or hooks.get("createRuntime"):
        chan.send({"type": "hooks"}, up=True)
        if chan.recv(up=False) is None:
            os._exit(1)
    if hooks.get("createContainer"):
        from skiff.runtime import hooks as hooks_mod

        os.chdir(job.rootfs)  # hooks see the rootfs as their working directory, as with runc

        hooks_mod.run(
            "createContainer",
            hooks["createContainer"],
            {
                "ociVersion": spec.get("ociVersion", ""),
                "id": job.id,
                "status": "creating",
                "pid": host_pid,
                "bundle": job.bundle,
            },
        )
    if new_mnt:
        rootfs.pivot(job.rootfs, job.no_pivot)
    else:
        os.chdir(job.rootfs)
        os.chroot(".")
    if process.get("terminal"):
        setup_console(job.console_fd, process, mount_console=new_mnt)
    if new_mnt:
        rootfs.finalize(spec)
    if spec.get("hostname"):
        linux.sethostname(spec["hostname"])
    if spec.get("domainname"):
        linux.setdomainname(spec["domainname"])
    for key, value in linux_cfg.get("sysctl", {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    for path in linux_cfg.get("readonlyPaths", []):
        rootfs.readonly_path(path)
    for path in linux_cfg.get("maskedPaths", []):
        rootfs.mask_path(path)
    _apply_rlimits(process)
    seccomp = linux_cfg.get("seccomp")
    nnp = bool(process.get("noNewPrivileges"))
    if seccomp and not nnp:
        from skiff.runtime import seccomp as seccomp_mod

        seccomp_mod.load(seccomp)
    env = _env(process)
    path = _lookup(process["args"][0], env)
    _finalize_process(process, job.preserve_fds, create_cwd=True)
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    chan.send({"type": "ready"}, up=True)
    os.close(chan.up_w)
    os.close(chan.down_r)
    if fifo_fd >= 0:
        # blocks until `start` opens the FIFO for reading
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(fifo_fd)
    if seccomp and nnp:
        from skiff.runtime import seccomp as seccomp_mod

        # before startContainer hooks: they run under the container's filter, as with runc
        seccomp_mod.load(seccomp)
    if hooks.get("startContainer"):
        from skiff.runtime import hooks as hooks_mod

        hooks_mod.run(
            "startContainer",
            hooks["startContainer"],
            {
                "ociVersion": spec.get("ociVersion", ""),
                "id": job.id,
                "status": "created",
                "pid": host_pid,
                "bundle": job.bundle,
            },
        )
    _exec(path, process["args"], env)


def _env(process: Process) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in process.get("env", []):
        key, _, value = item.partition("=")
        env[key] = value
    if "HOME" not in env:
        env["HOME"] = _home(process.get("user", {}).get("uid", 0))
    return env


def _home(uid: int) -> str:
    try:
        with open("/etc/passwd") as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                if len(fields) >= 6 and fields[2] == str(uid):
                    return fields[5] or "/"
    except OSError:
        pass
    return "/"


def _lookup(name: str, env: dict[str, str]) -> str:
    if "/" in name:
        if not os.path.exists(name):
            raise SetupError(f'exec: "{name}": stat {name}: no such file or directory')
        return name
    for d in env.get("PATH", "").split(":"):
        candidate = os.path.join(d or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f'exec: "{name}": executable file not found in $PATH')


def _apply_rlimits(process: Process) -> None:
    for r in process.get("rlimits", []):
        resource.setrlimit(RLIMITS[r["type"]], (r["soft"], r["hard"]))


def _finalize_process(process: Process, preserve_fds: int, create_cwd: bool = False) -> None:
    """Close what must not leak, drop privileges, change to the working directory."""
    # every descriptor past stdio and the preserved ones closes at execve
    linux.close_range_cloexec(3 + preserve_fds)
    capabilities = process.get("capabilities")
    if capabilities is not None:
        caps.apply_bounding(caps.mask(capabilities.get("bounding", [])))
    user = process.get("user", {})
    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    cwd = process.get("cwd", "/")
    if create_cwd and not os.path.isdir(cwd):
        os.makedirs(cwd, 0o755, exist_ok=True)  # as runc does, before dropping to the user
    # as root first (a cwd only root may enter still works, as with runc), else as the user
    changed = _chdir(cwd, final=False)
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    groups = list(user.get("additionalGids", []))
    try:
        os.setgroups(groups)
    except PermissionError:
        if groups:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    if not changed:
        _chdir(cwd, final=True)
    os.umask(user.get("umask", 0o022))
    if capabilities is not None:
        caps.apply(dict(capabilities))  # type: ignore[arg-type]


def _chdir(cwd: str, final: bool) -> bool:
    try:
        os.chdir(cwd)
        return True
    except PermissionError:
        if final:
            raise SetupError(f"chdir to cwd ({cwd!r}) set in config.json failed: permission denied")
        return False
    except FileNotFoundError:
        raise SetupError(
            f"chdir to cwd ({cwd!r}) set in config.json failed: no such file or directory"
        )


def _exec(path: str, args: list[str], env: dict[str, str]) -> NoReturn:
    # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    os.execve(path, args, env)


def setup_console(console_fd: int | None, process: Process, mount_console: bool) -> None:
    """Make a pty in the container's devpts, hand its master out, and make it our tty."""
    if console_fd is None:
        raise SetupError("terminal requested but no console socket was given")
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    slave_path = f"/dev/pts/{number}"
    size = process.get("consoleSize")
    if size:
        fcntl.ioctl(
            master,
            TIOCSWINSZ,
            struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0),
        )
    slave = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    # the terminal belongs to the process's user; its group stays devpts's (gid=5)
    os.fchown(slave, process.get("user", {}).get("uid", 0), -1)
    if mount_console:
        try:
            if not os.path.exists("/dev/console"):
                os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
            linux.mount(slave_path, "/dev/console", "bind", linux.MS_BIND)
        except OSError:
            pass  # a read-only /dev: the console mount is a convenience
    send_fd(console_fd, master, b"/dev/ptmx")
    os.close(master)
    os.close(console_fd)
    fcntl.ioctl(slave, TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd, inheritable=True)
    if slave > 2:
        os.close(slave)


def _send_fds(sock_fd: int, fds: list[int]) -> None:
    import _socket

    sock = _socket.socket(fileno=os.dup(sock_fd))
    try:
        data = struct.pack(f"{len(fds)}i", *fds)
        sock.sendmsg([b"F"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data)])
    finally:
        sock.close()


def _recv_fds(sock_fd: int, count: int) -> list[int]:
    import _socket

    sock = _socket.socket(fileno=os.dup(sock_fd))
    try:
        _, ancillary, _, _ = sock.recvmsg(16, _socket.CMSG_SPACE(4 * count))
    finally:
        sock.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return list(struct.unpack(f"{len(data) // 4}i", data[: len(data) // 4 * 4]))
    raise SetupError("mount sources were not passed to init")


def send_fd(sock_fd: int, fd: int, name: bytes) -> None:
    import _socket

    sock = _socket.socket(fileno=os.dup(sock_fd))
    try:
        sock.sendmsg([name], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        sock.close()


# --- exec into a running container ------------------------------------------------------


class ExecJob:
    def __init__(
        self,
        *,
        spec: Spec,
        process: Process,
        init_pid: int,
        console_fd: int | None,
        preserve_fds: int,
        detach: bool,
    ):
        self.spec = spec
        self.process = process
        self.init_pid = init_pid
        self.console_fd = console_fd
        self.preserve_fds = preserve_fds
        self.detach = detach


def spawn_exec(job: ExecJob, chan: Channel, on_child: Callable[[int], None]) -> tuple[int, int]:
    """Fork the exec'd process into the container; returns (its pid, A's pid or 0)."""
    preload(job.spec, job.process)
    a_pid = os.fork()
    if a_pid == 0:
        try:
            chan.child_side()
            _exec_stage_a(job, chan)
        except BaseException as e:
            _child_fail(chan, e)
        os._exit(0)
    chan.parent_side()
    b_pid = 0
    try:
        on_child(a_pid)
        chan.send({"type": "go"}, up=False)
        while True:
            msg = chan.recv(up=True)
            if msg is None:
                raise SetupError("exec process exited before it was ready")
            kind = msg.get("type")
            if kind == "pid":
                b_pid = int(msg["pid"])
                # B waits for this: no message of B's may overtake A's pid
                chan.send({"type": "continue"}, up=False)
            elif kind == "ready":
                # the pipe is close-on-exec: its end means B has exec'd, so the pid
                # we hand out already names the user's process (or B reports an error)
                late = chan.recv(up=True)
                if late is not None and late.get("type") == "error":
                    raise SetupError(str(late.get("message")))
                return b_pid, a_pid
            elif kind == "error":
                raise SetupError(str(msg.get("message")))
    except BaseException:
        for pid in (b_pid, a_pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.waitpid(a_pid, 0)
        except ChildProcessError:
            pass
        raise
    finally:
        chan.close_parent()


def _exec_stage_a(job: ExecJob, chan: Channel) -> None:
    if chan.recv(up=False) is None:
        os._exit(1)
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    joins: list[tuple[str, str]] = []
    for ns in job.spec.get("linux", {}).get("namespaces", []):
        kind = ns["type"]
        name = linux.NAMESPACE_PROC_NAMES[kind]
        theirs = f"/proc/{job.init_pid}/ns/{name}"
        try:
            if os.stat(theirs).st_ino == os.stat(f"/proc/self/ns/{name}").st_ino:
                continue
        except FileNotFoundError:
            continue
        joins.append((kind, theirs))
    _join(joins)
    b_pid = os.fork()
    if b_pid == 0:
        try:
            _exec_stage_b(job, chan)
        except BaseException as e:
            _child_fail(chan, e)
        os._exit(1)
    chan.send({"type": "pid", "pid": b_pid}, up=True)
    if job.detach:
        os._exit(0)
    os.close(chan.up_w)
    os.close(chan.down_r)
    # relay B's exit to P, which waits on us
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda s, f: os.kill(b_pid, s))
    _, status = os.waitpid(b_pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _exec_stage_b(job: ExecJob, chan: Channel) -> None:
    if chan.recv(up=False) is None:
        os._exit(1)
    process = job.process
    if process.get("terminal"):
        os.setsid()
        setup_console(job.console_fd, process, mount_console=False)
    _apply_rlimits(process)
    seccomp = job.spec.get("linux", {}).get("seccomp")
    nnp = bool(process.get("noNewPrivileges"))
    if seccomp and not nnp:
        from skiff.runtime import seccomp as seccomp_mod

        seccomp_mod.load(seccomp)
    env = _env(process)
    path = _lookup(process["args"][0], env)
    _finalize_process(process, job.preserve_fds)
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    chan.send({"type": "ready"}, up=True)
    if seccomp and nnp:
        from skiff.runtime import seccomp as seccomp_mod

        seccomp_mod.load(seccomp)
    _exec(path, process["args"], env)
