"""The task manager of skiff-containerd: one shim per task, found again
after a restart. Below the tasks service; above the shims (shim.py)::

    <state>/io.containerd.runtime.v2.task/<ns>/<id>/   the bundle
        config.json  rootfs/  log (FIFO)  address  shim-binary-path
        work -> <root>/io.containerd.runtime.v2.task/<ns>/<id>
        skiff-exit   the exit of a shim that died (until the task is deleted)

The bundle directories are the only record: on start every bundle with an
`address` is reconnected; a shim that cannot be reached is buried with
`<shim> delete` and its task reported stopped with the status that returns.
A task whose process ended while skiff-containerd was down gets its
/tasks/exit published again, since the shim could not deliver it.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from skiff.containerd.metadata.db import AnyValue, Container
from skiff.containerd.tasks.shim import (
    SHIM_BINARY_FILE,
    LogDrain,
    Shim,
    connect_shim,
    delete_dead_shim,
    find_shim,
    start_shim,
)
from skiff.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SkiffError,
    Unavailable,
)
from skiff.ttrpc import events as ev
from skiff.ttrpc import task as tt
from skiff.ttrpc.protobuf import Any_, Empty, Message, Timestamp

log = logging.getLogger("skiff.containerd.tasks")

TASK_DIR = "io.containerd.runtime.v2.task"
EXIT_FILE = "skiff-exit"

# containerd.v1.types.Status
UNKNOWN, CREATED, RUNNING, STOPPED, PAUSED, PAUSING = range(6)

Publish = Callable[[str, str, AnyValue], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessState:
    id: str
    pid: int
    status: int
    exec_id: str = ""
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: int = 0  # ns


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateOptions:
    rootfs: Sequence[tt.Mount] = ()
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    options: AnyValue | None = None
    checkpoint: str = ""


@dataclass(slots=True)
class _Task:
    namespace: str
    id: str
    bundle: str
    binary: str
    shim: Shim | None
    pid: int = 0
    # set once the shim is gone: (exit status, exited at ns)
    dead: tuple[int, int] | None = None
    drain: LogDrain | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _any(value: AnyValue | None) -> Any_ | None:
    return Any_(type_url=value.type_url, value=value.value) if value is not None else None


def _ts(ns: int) -> Timestamp | None:
    return Timestamp.from_ns(ns) if ns else None


class TaskManager:
    def __init__(
        self,
        *,
        root: str,
        state: str,
        grpc_address: str,
        ttrpc_address: str,
        publish_binary: str,
        publish: Publish,
        shims: dict[str, str] | None = None,
        poll_interval: float = 0.5,
    ) -> None:
        self.root = os.path.join(root, TASK_DIR)
        self.state_dir = os.path.join(state, TASK_DIR)
        os.makedirs(self.root, 0o711, exist_ok=True)
        os.makedirs(self.state_dir, 0o711, exist_ok=True)
        self.grpc_address = grpc_address
        self.ttrpc_address = ttrpc_address
        self.publish_binary = publish_binary
        self._publish = publish
        self.shims = dict(shims or {})
        self._tasks: dict[tuple[str, str], _Task] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poll_interval = poll_interval
        self._monitor = threading.Thread(target=self._watch_shims, daemon=True)
        self._monitor.start()

    # -- bookkeeping ---------------------------------------------------------

    def bundle_of(self, ns: str, cid: str) -> str:
        return os.path.join(self.state_dir, ns, cid)

    def _get(self, ns: str, cid: str) -> _Task:
        with self._lock:
            t = self._tasks.get((ns, cid))
        if t is None:
            raise NotFound(f"task {cid}: not found")
        return t

    def _shim(self, t: _Task) -> Shim:
        if t.shim is None or t.dead is not None:
            raise FailedPrecondition(f"task {t.id}: shim is gone, the task is stopped")
        return t.shim

    def _call(
        self,
        t: _Task,
        method: str,
        req: Message,
        resp: type[Message] | None = None,
        timeout: float | None = 30.0,
    ) -> Message | None:
        shim = self._shim(t)
        try:
            return shim.call(method, req, resp, timeout=timeout)
        except Unavailable:
            # the connection died under us: bury the shim now rather than at the next poll
            self._bury(t)
            raise FailedPrecondition(f"task {t.id}: shim died, the task is stopped")

    def close(self) -> None:
        """Drop connections; the shims and their containers live on."""
        self._closed.set()
        with self._lock:
            tasks = list(self._tasks.values())
        for t in tasks:
            if t.shim is not None:
                t.shim.close()
            if t.drain is not None:
                t.drain.close()

    # -- create / delete -------------------------------------------------------

    def create(self, ns: str, container: Container, opts: CreateOptions) -> int:
        if container.spec is None:
            raise FailedPrecondition(f"container {container.id}: has no spec")
        if opts.checkpoint:
            raise InvalidArgument("checkpoints are not supported")
        key = (ns, container.id)
        with self._lock:
            if key in self._tasks:
                raise AlreadyExists(f"task {container.id}: already exists")
            binary = find_shim(container.runtime, self.shims)
            bundle = self.bundle_of(ns, container.id)
            t = _Task(ns, container.id, bundle, binary, None)
            self._tasks[key] = t
        try:
            with t.lock:
                self._make_bundle(ns, container)
                t.drain = LogDrain(os.path.join(bundle, "log"), self._shim_log(container.id))
                options = opts.options or container.runtime_options
                t.shim = start_shim(
                    binary,
                    ns,
                    container.id,
                    bundle,
                    grpc_address=self.grpc_address,
                    ttrpc_address=self.ttrpc_address,
                    publish_binary=self.publish_binary,
                    options=options,
                )
                req = tt.CreateTaskRequest(
                    id=container.id,
                    bundle=bundle,
                    rootfs=list(opts.rootfs),
                    terminal=opts.terminal,
                    stdin=opts.stdin,
                    stdout=opts.stdout,
                    stderr=opts.stderr,
                    options=_any(options),
                )
                resp = t.shim.call("Create", req, tt.CreateTaskResponse, timeout=60)
                assert isinstance(resp, tt.CreateTaskResponse)
                t.pid = resp.pid
                return t.pid
        except BaseException:
            self._discard(t)
            raise

    def _shim_log(self, cid: str) -> Callable[[str], None]:
        def sink(line: str) -> None:
            log.info("shim %s: %s", cid, line)

        return sink

    def _make_bundle(self, ns: str, container: Container) -> None:
        assert container.spec is not None
        bundle = self.bundle_of(ns, container.id)
        work = os.path.join(self.root, ns, container.id)
        for path in (bundle, work):
            if os.path.exists(path):
                # left by a task deleted while we were down: nothing alive uses it
                shutil.rmtree(path)
        os.makedirs(bundle, 0o711)
        os.makedirs(work, 0o711)
        os.mkdir(os.path.join(bundle, "rootfs"), 0o711)
        os.symlink(work, os.path.join(bundle, "work"))
        try:
            json.loads(container.spec.value)
        except ValueError:
            raise InvalidArgument(f"container {container.id}: spec is not an OCI runtime spec")
        tmp = os.path.join(bundle, "config.json.tmp")
        with open(tmp, "wb") as f:
            f.write(container.spec.value)
        os.rename(tmp, os.path.join(bundle, "config.json"))

    def _discard(self, t: _Task) -> None:
        """Forget a task whose creation failed; stop its shim if one started."""
        if t.shim is not None:
            with contextlib.suppress(SkiffError):
                t.shim.call("Delete", tt.DeleteRequest(id=t.id), tt.DeleteResponse, timeout=10)
            with contextlib.suppress(SkiffError):
                t.shim.call("Shutdown", tt.ShutdownRequest(id=t.id, now=True), None, timeout=5)
            t.shim.close()
        self._remove_bundle(t)
        with self._lock:
            self._tasks.pop((t.namespace, t.id), None)

    def _remove_bundle(self, t: _Task) -> None:
        if t.drain is not None:
            t.drain.close()
        rootfs = os.path.join(t.bundle, "rootfs")
        if os.path.ismount(rootfs):
            from skiff.image.mount import unmount

            with contextlib.suppress(SkiffError):
                unmount(rootfs, detach=True)
        shutil.rmtree(t.bundle, ignore_errors=True)
        shutil.rmtree(os.path.join(self.root, t.namespace, t.id), ignore_errors=True)

    def delete(self, ns: str, cid: str, exec_id: str = "") -> ProcessState:
        t = self._get(ns, cid)
        if exec_id:
            resp = self._call(
                t, "Delete", tt.DeleteRequest(id=cid, exec_id=exec_id), tt.DeleteResponse
            )
            assert isinstance(resp, tt.DeleteResponse)
            return ProcessState(
                id=exec_id,
                exec_id=exec_id,
                pid=resp.pid,
                status=STOPPED,
                exit_status=resp.exit_status,
                exited_at=resp.exited_at.to_ns() if resp.exited_at else 0,
            )
        with t.lock:
            if t.dead is not None:
                status, at = t.dead
                pid = t.pid
            else:
                resp = self._call(t, "Delete", tt.DeleteRequest(id=cid), tt.DeleteResponse)
                assert isinstance(resp, tt.DeleteResponse)
                status, pid = resp.exit_status, resp.pid
                at = resp.exited_at.to_ns() if resp.exited_at else 0
                shim = self._shim(t)
                with contextlib.suppress(SkiffError):
                    shim.call("Shutdown", tt.ShutdownRequest(id=cid), None, timeout=5)
                shim.close()
                t.shim = None
            self._remove_bundle(t)
            with self._lock:
                self._tasks.pop((ns, cid), None)
        if t.dead is not None:
            self._publish_event(
                ns,
                ev.TaskDelete(
                    container_id=cid, pid=pid, exit_status=status, exited_at=_ts(at), id=cid
                ),
            )
        return ProcessState(id=cid, pid=pid, status=STOPPED, exit_status=status, exited_at=at)

    # -- the rest of the task API --------------------------------------------------

    def start(self, ns: str, cid: str, exec_id: str = "") -> int:
        t = self._get(ns, cid)
        resp = self._call(t, "Start", tt.StartRequest(id=cid, exec_id=exec_id), tt.StartResponse)
        assert isinstance(resp, tt.StartResponse)
        if not exec_id:
            t.pid = resp.pid
        return resp.pid

    def state(self, ns: str, cid: str, exec_id: str = "") -> ProcessState:
        t = self._get(ns, cid)
        if t.dead is not None:
            if exec_id:
                raise NotFound(f"process {exec_id}: not found")
            return ProcessState(
                id=cid, pid=t.pid, status=STOPPED, exit_status=t.dead[0], exited_at=t.dead[1]
            )
        r = self._call(
            t, "State", tt.StateRequest(id=cid, exec_id=exec_id), tt.StateResponse, timeout=10
        )
        assert isinstance(r, tt.StateResponse)
        return ProcessState(
            id=r.id or cid,
            pid=r.pid,
            status=r.status,
            exec_id=r.exec_id,
            stdin=r.stdin,
            stdout=r.stdout,
            stderr=r.stderr,
            terminal=r.terminal,
            exit_status=r.exit_status,
            exited_at=r.exited_at.to_ns() if r.exited_at else 0,
        )

    def list(self, ns: str) -> builtins.list[ProcessState]:
        with self._lock:
            ids = sorted(cid for (n, cid) in self._tasks if n == ns)
        out = []
        for cid in ids:
            try:
                out.append(self.state(ns, cid))
            except (NotFound, FailedPrecondition):
                with contextlib.suppress(NotFound):
                    out.append(self.state(ns, cid))  # buried meanwhile: now reported stopped
        return out

    def kill(self, ns: str, cid: str, signal: int, exec_id: str = "", all: bool = False) -> None:
        t = self._get(ns, cid)
        if t.dead is not None:
            raise NotFound("process already finished: not found")
        self._call(t, "Kill", tt.KillRequest(id=cid, exec_id=exec_id, signal=signal, all=all))

    def wait(self, ns: str, cid: str, exec_id: str = "") -> tuple[int, int]:
        t = self._get(ns, cid)
        if t.dead is not None:
            return t.dead
        try:
            r = self._call(
                t, "Wait", tt.WaitRequest(id=cid, exec_id=exec_id), tt.WaitResponse, timeout=None
            )
        except FailedPrecondition:
            if t.dead is not None and not exec_id:
                return t.dead
            raise
        assert isinstance(r, tt.WaitResponse)
        return r.exit_status, r.exited_at.to_ns() if r.exited_at else 0

    def exec(
        self,
        ns: str,
        cid: str,
        exec_id: str,
        spec: AnyValue | None,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
    ) -> None:
        if not exec_id:
            raise InvalidArgument("exec id must not be empty")
        t = self._get(ns, cid)
        self._call(
            t,
            "Exec",
            tt.ExecProcessRequest(
                id=cid,
                exec_id=exec_id,
                terminal=terminal,
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                spec=_any(spec),
            ),
            tt.ExecProcessResponse,
        )

    def pids(self, ns: str, cid: str) -> builtins.list[tt.ProcessInfo]:
        t = self._get(ns, cid)
        if t.dead is not None:
            return []
        r = self._call(t, "Pids", tt.PidsRequest(id=cid), tt.PidsResponse)
        assert isinstance(r, tt.PidsResponse)
        return list(r.processes)

    def pause(self, ns: str, cid: str) -> None:
        self._call(self._get(ns, cid), "Pause", tt.PauseRequest(id=cid))

    def resume(self, ns: str, cid: str) -> None:
        self._call(self._get(ns, cid), "Resume", tt.ResumeRequest(id=cid))

    def close_io(self, ns: str, cid: str, exec_id: str = "", stdin: bool = True) -> None:
        self._call(
            self._get(ns, cid), "CloseIO", tt.CloseIORequest(id=cid, exec_id=exec_id, stdin=stdin)
        )

    def resize_pty(self, ns: str, cid: str, exec_id: str, width: int, height: int) -> None:
        self._call(
            self._get(ns, cid),
            "ResizePty",
            tt.ResizePtyRequest(id=cid, exec_id=exec_id, width=width, height=height),
        )

    def update(self, ns: str, cid: str, resources: AnyValue | None) -> None:
        self._call(
            self._get(ns, cid), "Update", tt.UpdateTaskRequest(id=cid, resources=_any(resources))
        )

    def stats(self, ns: str, cid: str) -> AnyValue | None:
        t = self._get(ns, cid)
        r = self._call(t, "Stats", tt.StatsRequest(id=cid), tt.StatsResponse)
        assert isinstance(r, tt.StatsResponse)
        if r.stats is None or not r.stats.type_url:
            return None
        return AnyValue(r.stats.type_url, r.stats.value)

    # -- shims that die, and restarts --------------------------------------------

    def _publish_event(self, ns: str, msg: Message) -> None:
        try:
            self._publish(ns, msg.TOPIC, AnyValue(msg.NAME, msg.encode()))
        except SkiffError as exc:
            log.warning("publish %s: %s", msg.TOPIC, exc)

    def _bury(self, t: _Task) -> None:
        """The shim is gone: clean up after it, record and announce the exit."""
        with self._lock:
            if t.dead is not None:
                return
            t.dead = (137, time.time_ns())  # claimed; the real status follows
        if t.shim is not None:
            t.shim.close()
        resp = delete_dead_shim(
            t.binary,
            t.namespace,
            t.id,
            t.bundle,
            grpc_address=self.grpc_address,
            publish_binary=self.publish_binary,
        )
        at = resp.exited_at.to_ns() if resp.exited_at else time.time_ns()
        t.dead = (resp.exit_status, at)
        t.pid = t.pid or resp.pid
        with contextlib.suppress(OSError):
            tmp = os.path.join(t.bundle, EXIT_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump({"status": resp.exit_status, "exited_at": at, "pid": t.pid}, f)
            os.rename(tmp, os.path.join(t.bundle, EXIT_FILE))
            os.unlink(os.path.join(t.bundle, "address"))
        log.warning(
            "task %s/%s: shim died; task stopped with status %d",
            t.namespace,
            t.id,
            resp.exit_status,
        )
        self._publish_event(
            t.namespace,
            ev.TaskExit(
                container_id=t.id,
                id=t.id,
                pid=t.pid,
                exit_status=resp.exit_status,
                exited_at=_ts(at),
            ),
        )

    def _watch_shims(self) -> None:
        while not self._closed.wait(self._poll_interval):
            with self._lock:
                gone = [
                    t
                    for t in self._tasks.values()
                    if t.dead is None and t.shim is not None and not t.shim.alive
                ]
            for t in gone:
                try:
                    self._bury(t)
                except Exception as exc:  # the watcher must outlive any one shim
                    log.error("bury shim of %s: %s", t.id, exc)

    def restore(self) -> int:
        """Find the tasks of an earlier run; returns how many were found."""
        found = 0
        for ns in sorted(os.listdir(self.state_dir)):
            for cid in sorted(os.listdir(os.path.join(self.state_dir, ns))):
                bundle = self.bundle_of(ns, cid)
                try:
                    self._restore_one(ns, cid, bundle)
                    found += 1
                except Exception as exc:
                    log.error("restore task %s/%s: %s", ns, cid, exc)
        return found

    def _restore_one(self, ns: str, cid: str, bundle: str) -> None:
        try:
            with open(os.path.join(bundle, SHIM_BINARY_FILE)) as f:
                binary = f.read().strip()
        except OSError:
            binary = ""
        t = _Task(ns, cid, bundle, binary, None)
        exit_file = os.path.join(bundle, EXIT_FILE)
        if os.path.exists(exit_file):
            with open(exit_file) as f:
                rec = json.load(f)
            t.dead, t.pid = (int(rec["status"]), int(rec["exited_at"])), int(rec.get("pid", 0))
            with self._lock:
                self._tasks[(ns, cid)] = t
            return
        try:
            with open(os.path.join(bundle, "address")) as f:
                address = f.read().strip()
        except OSError:
            address = ""
        if not address or not binary:
            # creation never finished: nothing to report, only to clean up
            if binary:
                delete_dead_shim(
                    binary,
                    ns,
                    cid,
                    bundle,
                    grpc_address=self.grpc_address,
                    publish_binary=self.publish_binary,
                )
            self._remove_bundle(t)
            return
        with self._lock:
            self._tasks[(ns, cid)] = t
        if os.path.exists(os.path.join(bundle, "log")):
            t.drain = LogDrain(os.path.join(bundle, "log"), self._shim_log(cid))
        try:
            t.shim = connect_shim(binary, address)
            r = t.shim.call("State", tt.StateRequest(id=cid), tt.StateResponse, timeout=10)
        except SkiffError:
            self._bury(t)
            return
        assert isinstance(r, tt.StateResponse)
        t.pid = r.pid
        if r.status == STOPPED:
            # it ended while we were away; the shim could not tell us then
            self._publish_event(
                ns,
                ev.TaskExit(
                    container_id=cid,
                    id=cid,
                    pid=r.pid,
                    exit_status=r.exit_status,
                    exited_at=r.exited_at,
                ),
            )
        log.info("restored task %s/%s (pid %d, status %d)", ns, cid, r.pid, r.status)


__all__ = ["CreateOptions", "Empty", "ProcessState", "TaskManager"]
