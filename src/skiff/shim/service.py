"""The containerd.task.v2.Task service of skiff-shim: one container and its execs.

Sits between the ttrpc adapter (skiff.shim.server) and the OCI runtime
(skiff.shim.runtime). Every operation takes the process's lock, checks the
transition is allowed, acts, then records the new state; exits come from the
reaper and are turned into TaskExit events and answers to Wait.
"""

from __future__ import annotations

import os
import threading
import time

from skiff.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from skiff.shim import syscalls
from skiff.shim.forker import is_own_runtime
from skiff.shim.runtime import DEFAULT_RUNTIME, OciRuntime, resolve_binary
from skiff.shim.stdio import ConsoleSocket, ProcessIO
from skiff.ttrpc import events
from skiff.ttrpc import task as api
from skiff.ttrpc.protobuf import Any_, Timestamp

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from skiff.runtime.cgroups import Manager
    from skiff.shim.forker import Forker
    from skiff.shim.publisher import Publisher
    from skiff.shim.reaper import Reaper
    from skiff.ttrpc.cgroups import MemoryOomControl

VERSION = "skiff-shim 0.1.0"
RUNTIME_FILE = "skiff-runtime"  # binary and root, for `delete` after the shim died
EXIT_FILE = "init.exit"  # "status seconds nanos" of the container's init

# Lifecycle: which status may follow which.
_ALLOWED: dict[int, frozenset[int]] = {
    api.CREATED: frozenset({api.RUNNING, api.STOPPED}),
    api.RUNNING: frozenset({api.PAUSED, api.STOPPED}),
    api.PAUSED: frozenset({api.RUNNING, api.STOPPED}),
    api.STOPPED: frozenset(),
}
_NAMES = {
    api.CREATED: "created",
    api.RUNNING: "running",
    api.PAUSED: "paused",
    api.STOPPED: "stopped",
}


class Process:
    """The init process (exec_id "") or one exec'd process of the container."""

    def __init__(self, exec_id: str, io: ProcessIO) -> None:
        self.exec_id = exec_id
        self.io = io
        self.pid = 0
        self.status = api.CREATED
        self.exit_status = 0
        self.exited_at_ns = 0
        self.spec_path = ""
        self.lock = threading.Lock()
        self.exited = threading.Event()
        self.starting = False
        self.pending_exit: tuple[int, int] | None = None

    def move_to(self, status: int) -> None:
        if status != self.status and status not in _ALLOWED[self.status]:
            raise FailedPrecondition(
                f"process {self.exec_id or 'init'} is {_NAMES[self.status]}, "
                f"cannot become {_NAMES[status]}"
            )
        self.status = status

    def exited_at(self) -> Timestamp | None:
        return Timestamp.from_ns(self.exited_at_ns) if self.exited_at_ns else None


def read_runtime_options(options: Any_ | None) -> tuple[str, str]:
    """(binary name, runtime root) from CreateTaskRequest.options; "" where unset."""
    if options is None or not options.type_url:
        return "", ""
    name = options.type_name()
    if name == api.RuncOptions.NAME:
        o = api.RuncOptions.decode(options.value)
        return o.binary_name, o.root
    if name == api.RuntimeOptions.NAME:
        o2 = api.RuntimeOptions.decode(options.value)
        body = o2.config_body
        if not body and o2.config_path:
            try:
                with open(o2.config_path, "rb") as f:
                    body = f.read()
            except OSError as exc:
                raise InvalidArgument(f"runtime config {o2.config_path}: {exc.strerror}")
        return read_shim_config(body)
    raise InvalidArgument(f"unsupported runtime options type {options.type_url}")


def read_shim_config(body: bytes) -> tuple[str, str]:
    """The shim's TOML config: `BinaryName` (or `runtime`) and `Root` (or `runtime_root`)."""
    if not body:
        return "", ""
    import tomllib

    try:
        doc = tomllib.loads(body.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"shim config: {exc}")
    binary = doc.get("BinaryName") or doc.get("runtime") or ""
    root = doc.get("Root") or doc.get("runtime_root") or ""
    return str(binary), str(root)


class TaskService:
    def __init__(
        self,
        *,
        container_id: str,
        namespace: str,
        bundle: str,
        runtime_root: str,
        reaper: Reaper,
        publisher: Publisher,
        shutdown: Callable[[], None],
        log: Callable[[str], None],
        forker: Forker | None = None,
    ) -> None:
        self.container_id = container_id
        self._forker = forker
        self.namespace = namespace
        self.bundle = bundle
        self._default_root = runtime_root
        self._reaper = reaper
        self._publisher = publisher
        self._shutdown = shutdown
        self._log = log
        self._processes: dict[str, Process] = {}
        self._lock = threading.Lock()
        self._runtime: OciRuntime | None = None
        self._mounted = False
        self._exec_counter = 0

    # --- helpers ---------------------------------------------------------------

    def _process(self, container_id: str, exec_id: str = "") -> Process:
        if container_id != self.container_id:
            raise NotFound(f"task {container_id} not found in shim of {self.container_id}")
        with self._lock:
            p = self._processes.get(exec_id)
        if p is None:
            what = f"exec {exec_id}" if exec_id else f"task {container_id}"
            raise NotFound(f"{what} not found")
        return p

    def _oci(self) -> OciRuntime:
        if self._runtime is None:
            raise FailedPrecondition("task not created")
        return self._runtime

    def _path(self, name: str) -> str:
        return os.path.join(self.bundle, name)

    # --- Task API --------------------------------------------------------------

    def create(self, req: api.CreateTaskRequest) -> api.CreateTaskResponse:
        if req.id != self.container_id:
            raise InvalidArgument(f"shim serves {self.container_id}, not {req.id}")
        if req.checkpoint:
            raise InvalidArgument("checkpoint restore is not supported")
        with self._lock:
            if "" in self._processes:
                raise AlreadyExists(f"task {req.id} already exists")
            io = ProcessIO(req.stdin, req.stdout, req.stderr, req.terminal)
            init = Process("", io)
            self._processes[""] = init
        try:
            self._create_init(req, init)
        except BaseException:
            with self._lock:
                self._processes.pop("", None)
            raise
        self._publisher.publish(
            events.TaskCreate(
                container_id=req.id,
                bundle=req.bundle,
                rootfs=list(req.rootfs),
                io=events.TaskIO(
                    stdin=req.stdin, stdout=req.stdout, stderr=req.stderr, terminal=req.terminal
                ),
                checkpoint=req.checkpoint,
                pid=init.pid,
            )
        )
        return api.CreateTaskResponse(pid=init.pid)

    def _create_init(self, req: api.CreateTaskRequest, init: Process) -> None:
        binary, root = read_runtime_options(req.options)
        if not binary:
            env_config = os.environ.get("SKIFF_SHIM_CONFIG", "")
            if env_config:
                with open(env_config, "rb") as f:
                    binary, root2 = read_shim_config(f.read())
                    root = root or root2
        binary = binary or os.environ.get("SKIFF_SHIM_RUNTIME", "") or DEFAULT_RUNTIME
        import sys

        path = resolve_binary(binary, sys.executable)
        root = root or self._default_root
        os.makedirs(root, mode=0o711, exist_ok=True)
        _write_atomic(self._path(RUNTIME_FILE), f"{path}\n{root}\n")
        forker = self._forker if self._forker is not None and is_own_runtime(path) else None
        self._runtime = oci = OciRuntime(path, root, self._path("log.json"), self._reaper, forker)
        self._log(f"create {req.id}: runtime {path} root {root}")

        rootfs = self._path("rootfs")
        mounted: list[str] = []
        console: ConsoleSocket | None = None
        try:
            if req.rootfs:
                os.makedirs(rootfs, exist_ok=True)
                for m in req.rootfs:
                    syscalls.mount(m.source, rootfs, m.type, list(m.options))
                    mounted.append(rootfs)
                self._mounted = True
            stdio = init.io.open()
            if req.terminal:
                console = ConsoleSocket(_console_path())
            pid_file = self._path("init.pid")
            oci.create(
                req.id, req.bundle or self.bundle, pid_file, stdio, console.path if console else ""
            )
            init.io.runtime_started()
            if console is not None:
                init.io.attach_console(console.receive_master())
            init.pid = _read_pid(pid_file)
        except BaseException:
            init.io.close()
            for target in reversed(mounted):
                _unmount_quiet(target)
            self._mounted = False
            raise
        finally:
            if console is not None:
                console.close()
        self._reaper.on_exit(init.pid, lambda status, at: self._exited(init, status, at))

    def start(self, req: api.StartRequest) -> api.StartResponse:
        p = self._process(req.id, req.exec_id)
        with p.lock:
            if p.status != api.CREATED or p.starting:
                raise FailedPrecondition(f"process is {_NAMES[p.status]}, cannot start")
            p.starting = True
        try:
            if req.exec_id:
                self._start_exec(p)
            else:
                self._oci().start(req.id)
        except BaseException:
            with p.lock:
                p.starting = False
            raise
        if req.exec_id:
            self._publisher.publish(
                events.TaskExecStarted(container_id=req.id, exec_id=req.exec_id, pid=p.pid)
            )
        else:
            self._publisher.publish(events.TaskStart(container_id=req.id, pid=p.pid))
        with p.lock:
            p.starting = False
            pending = p.pending_exit
            if pending is None:
                p.move_to(api.RUNNING)
        if pending is not None:
            self._exited(p, *pending)
        return api.StartResponse(pid=p.pid)

    def _start_exec(self, p: Process) -> None:
        stdio = p.io.open()
        console: ConsoleSocket | None = None
        pid_file = p.spec_path[: -len(".json")] + ".pid"
        try:
            if p.io.terminal:
                console = ConsoleSocket(_console_path())
            self._oci().exec(
                self.container_id, p.spec_path, pid_file, stdio, console.path if console else ""
            )
            p.io.runtime_started()
            if console is not None:
                p.io.attach_console(console.receive_master())
            p.pid = _read_pid(pid_file)
        except BaseException:
            p.io.close()
            raise
        finally:
            if console is not None:
                console.close()
        self._reaper.on_exit(p.pid, lambda status, at: self._exited(p, status, at))

    def _exited(self, p: Process, status: int, at_ns: int) -> None:
        """Called by the reaper (main thread): finish in a thread, output may still drain."""
        with p.lock:
            if p.starting:
                p.pending_exit = (status, at_ns)
                return
        threading.Thread(target=self._finish_exit, args=(p, status, at_ns), daemon=True).start()

    def _finish_exit(self, p: Process, status: int, at_ns: int) -> None:
        p.io.wait_copied(2.0)
        with p.lock:
            p.status = api.STOPPED
            p.exit_status = status
            p.exited_at_ns = at_ns
        if not p.exec_id:
            _write_atomic(
                self._path(EXIT_FILE),
                f"{status} {at_ns // 1_000_000_000} {at_ns % 1_000_000_000}\n",
            )
        p.io.process_exited()
        self._publisher.publish(
            events.TaskExit(
                container_id=self.container_id,
                id=p.exec_id or self.container_id,
                pid=p.pid,
                exit_status=status,
                exited_at=Timestamp.from_ns(at_ns),
            )
        )
        p.exited.set()

    def delete(self, req: api.DeleteRequest) -> api.DeleteResponse:
        p = self._process(req.id, req.exec_id)
        with p.lock:
            if p.status in (api.RUNNING, api.PAUSED):
                raise FailedPrecondition(f"cannot delete a {_NAMES[p.status]} process")
            was_created = p.status == api.CREATED
        p.io.close()
        if req.exec_id:
            with self._lock:
                self._processes.pop(req.exec_id, None)
            _remove_quiet(p.spec_path)
        else:
            try:
                self._oci().delete(req.id, force=was_created)
            except Exception as exc:
                if was_created:
                    raise
                self._log(f"delete {req.id}: {exc}")  # already gone is fine
            if was_created:
                p.exited.wait(5.0)
            if self._mounted:
                _unmount_quiet(self._path("rootfs"))
                self._mounted = False
        self._publisher.publish(
            events.TaskDelete(
                container_id=req.id,
                pid=p.pid,
                exit_status=p.exit_status,
                exited_at=p.exited_at(),
                id=req.exec_id,
            )
        )
        return api.DeleteResponse(
            pid=p.pid, exit_status=p.exit_status, exited_at=p.exited_at() or Timestamp()
        )

    def state(self, req: api.StateRequest) -> api.StateResponse:
        p = self._process(req.id, req.exec_id)
        return api.StateResponse(
            id=req.exec_id or req.id,
            bundle=self.bundle,
            pid=p.pid,
            status=p.status,
            stdin=p.io.stdin,
            stdout=p.io.stdout,
            stderr=p.io.stderr,
            terminal=p.io.terminal,
            exit_status=p.exit_status,
            exited_at=p.exited_at(),
            exec_id=req.exec_id,
        )

    def kill(self, req: api.KillRequest) -> None:
        p = self._process(req.id, req.exec_id)
        if p.status == api.STOPPED:
            raise NotFound("process already finished")
        if req.exec_id:
            if not p.pid:
                raise FailedPrecondition("exec process not started")
            try:
                os.kill(p.pid, req.signal)
            except ProcessLookupError:
                raise NotFound("process already finished")
            return
        try:
            self._oci().kill(req.id, req.signal, req.all)
        except Internal as e:
            # as containerd's runc shim: a process that went away between our status check
            # and the runtime's kill is "already finished", not an internal error
            text = str(e)
            if any(m in text for m in ("not running", "no such process", "already finished")):
                raise NotFound("process already finished") from e
            raise

    def exec(self, req: api.ExecProcessRequest) -> None:
        init = self._process(req.id)
        if init.status == api.STOPPED:
            raise FailedPrecondition("container is stopped")
        if req.spec is None:
            raise InvalidArgument("exec needs a process spec")
        with self._lock:
            if req.exec_id in self._processes or not req.exec_id:
                raise AlreadyExists(f"exec {req.exec_id!r} already exists")
            self._exec_counter += 1
            p = Process(req.exec_id, ProcessIO(req.stdin, req.stdout, req.stderr, req.terminal))
            p.spec_path = self._path(f"exec-{self._exec_counter}.json")
            self._processes[req.exec_id] = p
        # the spec Any holds the OCI Process as JSON, which is what the runtime reads
        with open(p.spec_path, "wb") as f:
            f.write(req.spec.value)
        self._publisher.publish(events.TaskExecAdded(container_id=req.id, exec_id=req.exec_id))

    def resize_pty(self, req: api.ResizePtyRequest) -> None:
        self._process(req.id, req.exec_id).io.resize(req.width, req.height)

    def close_io(self, req: api.CloseIORequest) -> None:
        p = self._process(req.id, req.exec_id)
        if req.stdin:
            p.io.close_stdin()

    def pids(self, req: api.PidsRequest) -> api.PidsResponse:
        init = self._process(req.id)
        with self._lock:
            by_pid = {
                p.pid: p.exec_id
                for p in self._processes.values()
                if p.pid and p.status != api.STOPPED
            }
        pids: list[int] = []
        if init.status != api.STOPPED:
            try:
                pids = self._oci().ps(req.id)
            except Exception as exc:
                self._log(f"ps {req.id}: {exc}")
        if not pids:
            pids = sorted(by_pid)  # what we know ourselves
        infos = []
        for pid in pids:
            info = api.ProcessInfo(pid=pid)
            exec_id = by_pid.get(pid, "")
            if exec_id:
                info.info = Any_.pack(api.ProcessDetails(exec_id=exec_id))
            infos.append(info)
        return api.PidsResponse(processes=infos)

    def pause(self, req: api.PauseRequest) -> None:
        p = self._process(req.id)
        with p.lock:
            if api.PAUSED not in _ALLOWED[p.status]:
                raise FailedPrecondition(f"cannot pause a {_NAMES[p.status]} task")
        self._oci().pause(req.id)
        with p.lock:
            p.move_to(api.PAUSED)
        self._publisher.publish(events.TaskPaused(container_id=req.id))

    def resume(self, req: api.ResumeRequest) -> None:
        p = self._process(req.id)
        with p.lock:
            if p.status != api.PAUSED:
                raise FailedPrecondition(f"cannot resume a {_NAMES[p.status]} task")
        self._oci().resume(req.id)
        with p.lock:
            p.move_to(api.RUNNING)
        self._publisher.publish(events.TaskResumed(container_id=req.id))

    def wait(self, req: api.WaitRequest) -> api.WaitResponse:
        p = self._process(req.id, req.exec_id)
        p.exited.wait()
        return api.WaitResponse(exit_status=p.exit_status, exited_at=p.exited_at())

    def stats(self, req: api.StatsRequest) -> api.StatsResponse:
        init = self._process(req.id)
        import json

        from skiff.ttrpc import cgroups

        if init.status == api.STOPPED:
            # the runtime refuses a stopped container, but its cgroup stays until
            # delete and containerd-shim-runc-v2 still reports it
            data = _stopped_cgroup_stats(self.bundle, req.id)
        else:
            # runc, crun and skiff-runc print one stats event: {"type":"stats","data":{...}}
            out = self._oci().run(["events", "--stats", req.id])
            try:
                doc = json.loads(out)
            except ValueError as exc:
                raise Internal(f"events --stats {req.id}: not json: {exc}")
            event = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(event, dict):
                raise Internal(f"events --stats {req.id}: no stats in {out[:200]!r}")
            data = event
        metrics = cgroups.metrics_from_runc(data)
        if metrics.memory is not None:
            metrics.memory_oom_control = _oom_control(self.bundle, req.id)
        # the bare message name as type URL, as containerd-shim-runc-v2 on cgroup v1
        return api.StatsResponse(stats=Any_.pack(metrics))

    def connect(self, req: api.ConnectRequest) -> api.ConnectResponse:
        with self._lock:
            init = self._processes.get("")
        return api.ConnectResponse(
            shim_pid=os.getpid(), task_pid=init.pid if init else 0, version=VERSION
        )

    def shutdown(self, req: api.ShutdownRequest) -> None:
        with self._lock:
            live = [p for p in self._processes.values() if p.status != api.STOPPED]
        if live and not req.now:
            return  # containerd asks after every delete; we stay while work remains
        self._shutdown()

    def update(self, req: api.UpdateTaskRequest) -> None:
        self._process(req.id)
        if req.resources is None:
            raise InvalidArgument("update needs resources")
        self._oci().update(req.id, req.resources.value)


def _cgroup(bundle: str, container_id: str) -> Manager | None:
    """The container's cgroups as its config.json names them (runc's rules for a
    relative path, from the shim's own cgroup), or None where only the runtime
    can tell (systemd's slice:prefix:name) or the bundle cannot be read."""
    import json

    from skiff.runtime.cgroups import Manager

    try:
        with open(os.path.join(bundle, "config.json"), "rb") as f:
            spec = json.load(f)
    except (OSError, ValueError):
        return None
    linux = spec.get("linux") if isinstance(spec, dict) else None
    path = str((linux or {}).get("cgroupsPath") or "")
    if ":" in path:
        return None
    return Manager.for_container(path, container_id)


def _stopped_cgroup_stats(bundle: str, container_id: str) -> dict[str, object]:
    """runc's stats document read from the container's cgroup, for Stats after its
    init has exited (the runtime then answers "not running")."""
    manager = _cgroup(bundle, container_id)
    if manager is None or not os.path.isdir(manager.dir("" if manager.unified else "memory")):
        raise NotFound(f"task {container_id} is stopped and its cgroup is gone")
    return manager.stats()


def _oom_control(bundle: str, container_id: str) -> MemoryOomControl | None:
    """memory.oom_control (cgroup v1), which containerd reports and runc's stats leave out."""
    from skiff.ttrpc.cgroups import MemoryOomControl

    manager = _cgroup(bundle, container_id)
    if manager is None or manager.unified:
        return None
    values: dict[str, int] = {}
    try:
        with open(os.path.join(manager.dir("memory"), "memory.oom_control")) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    values[key] = int(value)
    except OSError:
        return None
    return MemoryOomControl(
        oom_kill_disable=values.get("oom_kill_disable", 0),
        under_oom=values.get("under_oom", 0),
        oom_kill=values.get("oom_kill", 0),
    )


def _read_pid(path: str) -> int:
    with open(path) as f:
        return int(f.read().strip())


def _write_atomic(path: str, text: str) -> None:
    """Whole or not at all, for a reader after this process died; not fsynced: the
    bundle's files describe processes that a machine crash ends anyway."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def _unmount_quiet(target: str) -> None:
    try:
        syscalls.unmount(target)
    except OSError:
        pass


def _remove_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


_console_counter = [0]


def _console_path() -> str:
    # unix socket paths are limited to 108 bytes, so not in the (long) bundle path
    _console_counter[0] += 1
    return f"/tmp/skiff-shim-{os.getpid()}-{_console_counter[0]}-{time.monotonic_ns()}.sock"


def read_exit_file(bundle: str) -> tuple[int, int] | None:
    """(exit status, exit time in ns) recorded for the init, if it exited."""
    try:
        with open(os.path.join(bundle, EXIT_FILE)) as f:
            status, sec, nsec = f.read().split()
        return int(status), int(sec) * 1_000_000_000 + int(nsec)
    except (OSError, ValueError):
        return None
