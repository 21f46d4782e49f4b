"""The runtime's lifecycle operations: create, start, kill, delete, exec, pause, ...

Each operation has the same shape: load and refresh the status, check the
transition is allowed, act, save atomically, run hooks.
"""

from __future__ import annotations

import os
import time

from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from skiff.runtime import state as st
from skiff.runtime.cgroups import Manager
from skiff.runtime.sig import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import Process, Resources, Spec

SIGNALS = {
    name[3:]: int(getattr(signal, name))
    for name in dir(signal)
    if name.startswith("SIG")
    and not name.startswith("SIG_")
    and isinstance(getattr(signal, name), int)
}


def parse_signal(text: str) -> int:
    if text.isdigit():
        number = int(text)
        if not 0 <= number < 65:
            raise InvalidArgument(f"invalid signal: {text}")
        return number
    name = text.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name.startswith("RTMIN") or name.startswith("RTMAX"):
        base = signal.SIGRTMIN if name.startswith("RTMIN") else signal.SIGRTMAX
        rest = name[5:]
        offset = int(rest) if rest else 0
        return int(base) + offset
    if name not in SIGNALS:
        raise InvalidArgument(f"unknown signal {text!r}")
    return SIGNALS[name]


class Runtime:
    """The runtime over one state root (runc's --root)."""

    def __init__(
        self, root: str, cgroup_root: str = "/sys/fs/cgroup", debug: Any = None, warn: Any = None
    ):
        self.root = root
        self.cgroup_root = cgroup_root
        self.debug = debug or (lambda msg: None)
        self.warn = warn or (lambda msg: None)

    # --- create / start / run

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        subreaper: bool = False,
        own_console: bool = False,
    ) -> st.Container:
        from skiff.runtime import config as config_mod
        from skiff.runtime import hooks as hooks_mod
        from skiff.runtime import process as proc

        st.valid_id(container_id)
        bundle, spec = config_mod.load_bundle(bundle)
        process = spec["process"]
        if process.get("terminal") and not console_socket and not own_console:
            raise InvalidArgument(
                "cannot allocate tty if runc will detach without setting console socket"
            )
        if console_socket and not process.get("terminal"):
            raise InvalidArgument(
                "cannot use console socket if runc will not detach or allocate tty"
            )
        _warn_unsupported_lsm(process, self.warn)
        os.makedirs(self.root, 0o711, exist_ok=True)
        state_dir = os.path.join(self.root, container_id)
        try:
            os.mkdir(state_dir, 0o711)
        except FileExistsError:
            raise AlreadyExists(f"container with id exists: {container_id}")
        rootfs_path = config_mod.rootfs_path(bundle, spec)
        linux_cfg = spec.get("linux", {})
        manager = Manager.for_container(
            linux_cfg.get("cgroupsPath", ""), container_id, self.cgroup_root
        )
        container = st.Container(
            self.root,
            container_id,
            {
                "id": container_id,
                "pid": 0,
                "start_time": None,
                "bundle": bundle,
                "rootfs": os.path.realpath(rootfs_path),
                "created": st.now_rfc3339(),
                "owner": "",
                "config": spec,
                "cgroup": {
                    "root": manager.root,
                    "unified": manager.unified,
                    "paths": manager.paths,
                },
            },
        )
        made: list[str] = []
        console_fd: int | None = None
        console_peer = -1
        fifo_fd = -1
        try:
            fifo = os.path.join(state_dir, st.EXEC_FIFO)
            os.mkfifo(fifo, 0o622)
            os.chmod(fifo, 0o622)  # past the umask: init writes it as the container's user
            root_uid, root_gid = _host_root(spec)
            if root_uid or root_gid:
                os.chown(fifo, root_uid, root_gid)
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            if linux_cfg.get("resources", {}).get("unified") and not manager.unified:
                raise InvalidArgument(
                    "invalid configuration: cgroup v1 does not support unified resources"
                )
            made = manager.create()
            if manager.frozen():
                raise FailedPrecondition("container's cgroup unexpectedly frozen")
            others = manager.pids()
            if others:
                self.warn(f"container's cgroup is not empty: {len(others)} process(es) found")
            if "resources" in linux_cfg:
                manager.apply(linux_cfg["resources"])
            if console_socket:
                console_fd = _connect_unix(console_socket)
            elif own_console and process.get("terminal"):
                from skiff.runtime import tty

                console_fd, console_peer = tty.socketpair()
            if subreaper:
                from skiff.runtime import linux

                linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
            cgroup_dirs = {c: manager.dir(c) for c in manager.controllers()}
            job = proc.InitJob(
                container_id=container_id,
                spec=spec,
                bundle=bundle,
                rootfs_path=container.data["rootfs"],
                fifo_fd=fifo_fd,
                console_fd=console_fd,
                no_pivot=no_pivot,
                preserve_fds=preserve_fds,
                cgroup_dirs=cgroup_dirs,
                unified=manager.unified,
            )
            if any(
                ns.get("type") == "user" and not ns.get("path")
                for ns in linux_cfg.get("namespaces", [])
            ):
                from skiff.runtime import rootfs as rootfs_mod
                from skiff.runtime import tty

                job.bind_sources = rootfs_mod.bind_sources(bundle, spec)
                if job.bind_sources:
                    job.fd_sock = tty.socketpair()
            hooks = spec.get("hooks", {})

            def on_hooks(pid: int) -> None:
                container.data["pid"] = pid
                state = container.hook_state(st.CREATING)
                hooks_mod.run("prestart", hooks.get("prestart", []), state)
                hooks_mod.run("createRuntime", hooks.get("createRuntime", []), state)

            def join(a_pid: int) -> None:
                manager.join(a_pid)
                self.debug("child process in init()")

            self.debug("nsexec container setup")
            try:
                pid = proc.spawn_init(
                    job,
                    proc.Channel(),
                    join,
                    lambda a: _write_idmaps(a, spec),
                    on_hooks,
                    lambda a: _open_in_mount_ns(a, job.bind_sources),
                )
            finally:
                if job.fd_sock:
                    for fd in job.fd_sock:
                        os.close(fd)
            self.debug("init: closing the pipe to signal completion")
            container.data["pid"] = pid
            container.data["start_time"] = st.proc_start_time(pid)
            container.save()
            if console_peer >= 0:
                from skiff.runtime import tty

                container.console_master = tty.receive_master(console_peer)
                console_peer = -1
            if pid_file:
                _write_pid_file(pid_file, pid)
            return container
        except BaseException:
            # only what this create started: a shared cgroup may hold others' processes
            init_pid = container.data.get("pid") or 0
            if init_pid:
                try:
                    os.kill(init_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                _wait_dead(container)
            if made:
                _wait_gone(manager)
            for path in reversed(made):
                try:
                    os.rmdir(path)
                except OSError:
                    pass
            _rmtree(state_dir)
            raise
        finally:
            if console_fd is not None:
                os.close(console_fd)
            if fifo_fd >= 0:
                os.close(fifo_fd)
            if console_peer >= 0:
                os.close(console_peer)

    def start(self, container_id: str) -> None:
        container = st.Container.load(self.root, container_id)
        container.check("start")
        fifo = os.path.join(container.dir, st.EXEC_FIFO)
        _release_fifo(fifo, container)
        try:
            os.unlink(fifo)
        except FileNotFoundError:
            pass
        poststart = container.spec.get("hooks", {}).get("poststart", [])
        if poststart:
            from skiff.runtime import hooks as hooks_mod

            hooks_mod.run("poststart", poststart, container.hook_state(st.RUNNING))

    # --- kill / delete

    def kill(self, container_id: str, sig: int, all_processes: bool = False) -> None:
        container = st.Container.load(self.root, container_id)
        if all_processes:
            # as runc: --all signals whatever the cgroup still holds, even after init is gone
            manager = container.cgroups()
            for pid in manager.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if manager.frozen() and sig == signal.SIGKILL:
                manager.thaw()
            return
        container.check("kill")
        os.kill(container.pid, sig)

    def delete(self, container_id: str, force: bool = False) -> None:
        try:
            container = st.Container.load(self.root, container_id)
        except NotFound:
            if force:
                return
            raise
        status = container.status()
        if status in (st.RUNNING, st.PAUSED) and not force:
            container.check("delete")
        if status != st.STOPPED:
            manager = container.cgroups()
            own_pidns = any(
                ns.get("type") == "pid" and not ns.get("path")
                for ns in container.spec.get("linux", {}).get("namespaces", [])
            )
            # init's death ends a private pid namespace; without one, as runc does,
            # every process of the cgroup goes (a shared cgroup keeps the others')
            pids = [container.pid] if own_pidns else (manager.pids() or [container.pid])
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if status == st.PAUSED:
                manager.thaw()
            _wait_dead(container)
            _wait_gone(manager, timeout=1.0 if own_pidns else 10.0)
        self._destroy(container)

    def _destroy(self, container: st.Container) -> None:
        container.cgroups().remove()
        _rmtree(container.dir)
        poststop = container.spec.get("hooks", {}).get("poststop", [])
        if poststop:
            from skiff.runtime import hooks as hooks_mod

            try:
                hooks_mod.run("poststop", poststop, container.hook_state(st.STOPPED))
            except hooks_mod.HookError as e:
                self.debug(f"poststop hook failed: {e}")

    # --- queries

    def state(self, container_id: str) -> dict[str, Any]:
        return st.Container.load(self.root, container_id).oci_state()

    def containers(self) -> list[dict[str, Any]]:
        result = []
        try:
            names = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        for name in names:
            try:
                container = st.Container.load(self.root, name)
            except (NotFound, FailedPrecondition, InvalidArgument):
                continue
            state = container.oci_state()
            try:
                uid = os.stat(container.dir).st_uid
                import pwd

                state["owner"] = pwd.getpwuid(uid).pw_name
            except (KeyError, OSError):
                state["owner"] = f"#{os.stat(container.dir).st_uid}"
            result.append(state)
        return result

    def pids(self, container_id: str) -> list[int]:
        container = st.Container.load(self.root, container_id)
        if container.status() == st.STOPPED:
            return []
        return container.cgroups().pids()

    # --- pause / resume / update / stats

    def pause(self, container_id: str) -> None:
        container = st.Container.load(self.root, container_id)
        container.check("pause")
        container.cgroups().freeze()

    def resume(self, container_id: str) -> None:
        container = st.Container.load(self.root, container_id)
        container.check("resume")
        container.cgroups().thaw()

    def update(self, container_id: str, resources: Resources) -> None:
        container = st.Container.load(self.root, container_id)
        container.check("update")
        container.cgroups().apply(resources)
        linux_cfg = container.spec.setdefault("linux", {})
        current = linux_cfg.setdefault("resources", {})
        for key, value in resources.items():
            if isinstance(value, dict) and isinstance(current.get(key), dict):
                current[key].update(value)  # type: ignore[literal-required]
            else:
                current[key] = value  # type: ignore[literal-required]
        container.save()

    def oom_kills(self, container_id: str) -> int:
        container = st.Container.load(self.root, container_id)
        if container.status() == st.STOPPED:
            raise FailedPrecondition("container not running")
        return container.cgroups().oom_kills()

    def stats(self, container_id: str) -> dict[str, Any]:
        container = st.Container.load(self.root, container_id)
        if container.status() == st.STOPPED:
            raise FailedPrecondition("container not running")
        return {"type": "stats", "id": container_id, "data": container.cgroups().stats()}

    # --- exec

    def exec(
        self,
        container_id: str,
        process: Process,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        detach: bool = False,
        preserve_fds: int = 0,
        ignore_paused: bool = False,
        sub_cgroups: list[str] | None = None,
    ) -> int:
        from skiff.runtime import config as config_mod
        from skiff.runtime import process as proc

        container = st.Container.load(self.root, container_id)
        _warn_unsupported_lsm(process, self.warn)
        status = container.status()
        if status == st.PAUSED and not ignore_paused:
            raise FailedPrecondition(
                "cannot exec in a paused container (use --ignore-paused to override)"
            )
        if status != st.PAUSED:
            container.check("exec")
        config_mod.validate_process(process)
        if process.get("terminal") and not console_socket and detach:
            raise InvalidArgument(
                "cannot allocate tty if runc will detach without setting console socket"
            )
        console_peer = -1
        if console_socket:
            console_fd: int | None = _connect_unix(console_socket)
        elif process.get("terminal"):
            from skiff.runtime import tty

            console_fd, console_peer = tty.socketpair()
        else:
            console_fd = None
        try:
            job = proc.ExecJob(
                spec=container.spec,
                process=process,
                init_pid=container.pid,
                console_fd=console_fd,
                preserve_fds=preserve_fds,
                detach=detach,
            )
            manager = container.cgroups()
            targets = _exec_cgroups(manager, sub_cgroups or [])

            def join(pid: int) -> None:
                for path in targets:
                    procs = os.path.join(path, "cgroup.procs")
                    try:
                        fd = os.open(procs, os.O_WRONLY | os.O_CLOEXEC)
                    except OSError as e:
                        raise FailedPrecondition(
                            f"exec: adding pid {pid} to cgroups: {procs}: "
                            f"{os.strerror(e.errno or 0).lower()}"
                        )
                    try:
                        os.write(fd, str(pid).encode())
                    finally:
                        os.close(fd)
                self.debug("child process in init()")

            self.debug("nsexec container setup")
            b_pid, a_pid = proc.spawn_exec(job, proc.Channel(), join)
            self.debug("setns_init: about to exec")
        finally:
            if console_fd is not None:
                os.close(console_fd)
        if pid_file:
            _write_pid_file(pid_file, b_pid)
        if detach:
            try:
                os.waitpid(a_pid, 0)
            except ChildProcessError:
                pass
            return 0
        if console_peer >= 0:
            from skiff.runtime import tty

            return tty.proxy(tty.receive_master(console_peer), a_pid)
        return _wait_forwarding(a_pid, b_pid)

    def run(
        self,
        container_id: str,
        bundle: str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        no_pivot: bool = False,
        preserve_fds: int = 0,
        detach: bool = False,
        keep: bool = False,
    ) -> int:
        container = self.create(
            container_id,
            bundle,
            pid_file=pid_file,
            console_socket=console_socket,
            no_pivot=no_pivot,
            preserve_fds=preserve_fds,
            subreaper=not detach,
            own_console=not detach,
        )
        try:
            self.start(container_id)
        except BaseException:
            self.delete(container_id, force=True)
            raise
        if detach:
            return 0
        if container.console_master is not None:
            from skiff.runtime import tty

            code = tty.proxy(container.console_master, container.pid)
        else:
            code = _wait_forwarding(container.pid, container.pid)
        if not keep:
            try:
                self.delete(container_id, force=True)
            except NotFound:
                pass
        return code


def _wait_forwarding(wait_pid: int, signal_pid: int) -> int:
    """Wait for our child, passing on the signals we get, as `runc run` does."""
    forward = (
        signal.SIGINT,
        signal.SIGTERM,
        signal.SIGHUP,
        signal.SIGQUIT,
        signal.SIGUSR1,
        signal.SIGUSR2,
        signal.SIGWINCH,
    )

    def relay(sig: int, _frame: object) -> None:
        try:
            os.kill(signal_pid, sig)
        except ProcessLookupError:
            pass

    for sig in forward:
        signal.signal(sig, relay)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue
        if pid == wait_pid:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def _open_in_mount_ns(pid: int, sources: dict[int, str]) -> list[int]:
    """O_PATH descriptors of `sources`, opened as host root inside pid's mount namespace
    (a mount can only be bound from a descriptor of the same namespace), as runc does."""
    from skiff.runtime import linux

    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    cwd = os.open(".", os.O_PATH | os.O_CLOEXEC)
    theirs = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    fds: list[int] = []
    try:
        linux.setns(theirs, linux.CLONE_NEWNS)
        try:
            for index in sorted(sources):
                fds.append(os.open(sources[index], os.O_PATH | os.O_CLOEXEC))
        finally:
            linux.setns(own, linux.CLONE_NEWNS)
            os.fchdir(cwd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    finally:
        for fd in (own, cwd, theirs):
            os.close(fd)
    return fds


def _warn_unsupported_lsm(process: Process, warn: Any) -> None:
    """AppArmor and SELinux labels are ignored, with a warning, where the host has neither."""
    if process.get("apparmorProfile") and not os.path.exists("/sys/kernel/security/apparmor"):
        warn(
            f"apparmor is not enabled on this host: ignoring profile {process['apparmorProfile']!r}"
        )
    if process.get("selinuxLabel") and not os.path.exists("/sys/fs/selinux/enforce"):
        warn(f"selinux is not enabled on this host: ignoring label {process['selinuxLabel']!r}")


def _exec_cgroups(manager: Manager, specs: list[str]) -> list[str]:
    """The cgroup directories an exec'd process joins: the container's, or the
    sub-cgroups `--cgroup [controllers:]path` names (runc's syntax)."""
    controllers = manager.controllers()
    sub: dict[str, str] = {}
    for spec in specs:
        names, sep, path = spec.rpartition(":")
        wanted = names.split(",") if sep else controllers
        clean = os.path.normpath("/" + path).lstrip("/")
        if os.path.normpath(path).startswith(".."):
            raise InvalidArgument(f"bad sub cgroup path: {path} is not a sub cgroup path")
        for name in wanted:
            key = "" if manager.unified and name in ("", "unified") else name
            if key not in controllers:
                raise InvalidArgument(f"unknown controller {name!r} in --cgroup {spec}")
            sub[key] = clean
    result = []
    for c in controllers:
        base = manager.dir(c)
        result.append(os.path.join(base, sub[c]) if sub.get(c) else base)
    return result


def _host_root(spec: Spec) -> tuple[int, int]:
    """The host uid and gid that the container's root maps to."""
    linux_cfg = spec.get("linux", {})
    result = []
    for mappings in (linux_cfg.get("uidMappings", []), linux_cfg.get("gidMappings", [])):
        host = 0
        for m in mappings:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                host = m["hostID"] - m["containerID"]
        result.append(host)
    return result[0], result[1]


def _write_idmaps(pid: int, spec: Spec) -> None:
    linux_cfg = spec.get("linux", {})
    maps = {
        "uid_map": linux_cfg.get("uidMappings", []),
        "gid_map": linux_cfg.get("gidMappings", []),
    }
    for name, mappings in maps.items():
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
        if not lines:
            continue
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(lines)


def _connect_unix(path: str) -> int:
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as e:
        sock.close()
        raise NotFound(f"failed to connect to console socket {path}: {e.strerror}")
    return int(sock.detach())


def _write_pid_file(path: str, pid: int) -> None:
    path = os.path.abspath(path)
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path))
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _release_fifo(fifo: str, container: st.Container) -> None:
    """Open the exec FIFO and read init's byte: init then goes on to execve."""
    import select

    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FailedPrecondition("cannot start an already running container")
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while True:
            events = poller.poll(100)
            if events:
                data = os.read(fd, 1)
                if data:
                    return
                if not container.alive():
                    raise FailedPrecondition("cannot start a container that has stopped")
                time.sleep(0.001)
            elif not container.alive():
                raise FailedPrecondition("cannot start a container that has stopped")
    finally:
        os.close(fd)


def _wait_dead(container: st.Container, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while container.alive() and time.monotonic() < deadline:
        time.sleep(0.002)


def _wait_gone(manager: Manager, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = [p for p in manager.pids() if st.proc_start_time(p) is not None]
        if not live:
            return
        time.sleep(0.002)


def _rmtree(path: str) -> None:
    try:
        for name in os.listdir(path):
            os.unlink(os.path.join(path, name))
        os.rmdir(path)
    except FileNotFoundError:
        pass
