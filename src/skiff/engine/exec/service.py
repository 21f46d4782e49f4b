"""Exec instances: `docker exec` as containerd task processes.

skiffd -> exec -> (tasks.Exec over the containerd API) -> the container's shim.
An exec is created (recorded), then started with its own FIFOs; its exit
comes through the container service's exit stream. Healthchecks run here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from typing import Any

from skiff.engine.containers.model import Container, Status
from skiff.engine.containers.service import ContainerService
from skiff.engine.containers.spec import capabilities
from skiff.engine.containers.stdio import ProcessStdio
from skiff.engine.containers.supervisor_api import Exit
from skiff.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound, SkiffError


class ExecInstance:
    def __init__(self, eid: str, c: Container, config: dict[str, Any]):
        self.id = eid
        self.container = c
        self.config = config
        self.running = False
        self.exit_code: int | None = None
        self.pid = 0
        self.io: ProcessStdio | None = None
        self.exited = asyncio.Event()
        self.started = False

    def inspect(self) -> dict[str, Any]:
        cfg = self.config
        cmd = list(cfg.get("Cmd") or [])
        return {
            "CanRemove": False,
            "ContainerID": self.container.id,
            "DetachKeys": cfg.get("DetachKeys") or "",
            "ExitCode": self.exit_code,
            "ID": self.id,
            "OpenStderr": bool(cfg.get("AttachStderr")),
            "OpenStdin": bool(cfg.get("AttachStdin")),
            "OpenStdout": bool(cfg.get("AttachStdout")),
            "ProcessConfig": {
                "arguments": cmd[1:],
                "entrypoint": cmd[0] if cmd else "",
                "privileged": bool(cfg.get("Privileged")),
                "tty": bool(cfg.get("Tty")),
                "user": cfg.get("User") or "",
            },
            "Running": self.running,
            "Pid": self.pid,
        }


class ExecService:
    def __init__(self, containers: ContainerService):
        self.containers = containers
        self.execs: dict[str, ExecInstance] = {}

    def create(self, ref: str, config: dict[str, Any]) -> ExecInstance:
        c = self.containers.get(ref)
        if not isinstance(config, dict):
            raise InvalidArgument("exec config must be a JSON object")
        cmd = config.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
            config["Cmd"] = cmd
        if not cmd or not isinstance(cmd, list):
            raise InvalidArgument("No exec command specified")
        if c.status == Status.PAUSED:
            raise Conflict(f"Container {c.id} is paused, unpause the container before exec")
        if c.status != Status.RUNNING:
            raise Conflict(f"Container {c.id} is not running")
        eid = secrets.token_hex(32)
        inst = ExecInstance(eid, c, config)
        self.execs[eid] = inst
        ids = c.data.get("ExecIDs") or []
        c.data["ExecIDs"] = [*ids, eid]
        self.containers.events.emit(
            "container",
            f"exec_create: {' '.join(cmd)}",
            c.id,
            {**self.containers.attrs(c), "execID": eid},
        )
        return inst

    def get(self, eid: str) -> ExecInstance:
        inst = self.execs.get(eid)
        if inst is None:
            raise NotFound(f"No such exec instance: {eid}")
        return inst

    async def _spec(self, inst: ExecInstance) -> dict[str, Any]:
        c = inst.container
        cfg = inst.config
        svc = self.containers
        env = list(c.config.get("Env") or [])
        for e in cfg.get("Env") or []:
            key = e.split("=", 1)[0]
            env = [x for x in env if x.split("=", 1)[0] != key] + [e]
        if cfg.get("Tty") and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        user_saved = c.config.get("User")
        if cfg.get("User"):
            c.config["User"] = cfg["User"]
        try:
            uid, gid, extra = await svc._user(c)
        finally:
            c.config["User"] = user_saved
        priv = bool(cfg.get("Privileged")) or bool(c.host.get("Privileged"))
        caps = capabilities(priv, c.host.get("CapAdd"), c.host.get("CapDrop"))
        process: dict[str, Any] = {
            "terminal": bool(cfg.get("Tty")),
            "user": {"uid": uid, "gid": gid},
            "args": list(cfg["Cmd"]),
            "env": env,
            "cwd": cfg.get("WorkingDir") or c.config.get("WorkingDir") or "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": any(
                o.startswith("no-new-privileges") and not o.endswith("false")
                for o in c.host.get("SecurityOpt") or []
            ),
        }
        if extra:
            process["user"]["additionalGids"] = extra
        if cfg.get("ConsoleSize"):
            h, w = cfg["ConsoleSize"][:2]
            process["consoleSize"] = {"height": int(h), "width": int(w)}
        return process

    async def start(
        self, inst: ExecInstance, with_stdin: bool, sinks: list[Any] | None = None
    ) -> ProcessStdio:
        """Start the process; its stdio is ready for copying (sinks go on before this returns)."""
        if inst.started:
            raise Conflict(f"Exec command {inst.id} has already run")
        c = inst.container
        if not c.running:
            inst.started = True
            inst.exit_code = 126  # the command could not be invoked (see _task_gone)
            inst.exited.set()
            raise Conflict(f"Container {c.id} is not running")
        inst.started = True
        svc = self.containers
        process = await self._spec(inst)
        tty = bool(inst.config.get("Tty"))
        io = ProcessStdio(
            os.path.join(svc.fifo_root, c.id),
            f"exec-{inst.id[:16]}",
            with_stdin and bool(inst.config.get("AttachStdin")),
            tty,
        )
        io.open()
        io.sinks.extend(sinks or [])
        inst.io = io

        def on_exit(ex: Exit) -> None:
            asyncio.get_running_loop().create_task(self._exited(inst, ex.exit_status))

        svc.exec_exit_hooks[(c.id, inst.id)] = on_exit
        pid = c.state.get("Pid")
        try:
            await svc.sup().exec(
                c.id, inst.id, process, io.stdin_path, io.stdout_path, io.stderr_path, tty
            )
            io.start_copying()
            inst.pid = await svc.sup().start(c.id, inst.id)
        except SkiffError as e:
            svc.exec_exit_hooks.pop((c.id, inst.id), None)
            io.close()
            io.remove_files()
            inst.exit_code = 126 if "permission" in str(e).lower() else 127
            inst.exited.set()
            with contextlib.suppress(SkiffError):
                await svc.sup().delete_process(c.id, inst.id)
            command_fault = any(
                m in str(e).lower()
                for m in ("executable file not found", "permission denied", "no such file")
            )
            if not command_fault and await self._task_gone(c, pid):
                inst.exit_code = 126  # the command could not be invoked
                # the container exited (or a restart policy replaced its task) between the
                # exec's create and start: the new task's shim knows no such exec ("exec ...
                # not found"), a dying one refuses it; either way the container is not running
                raise Conflict(f"Container {c.id} is not running")
            raise Conflict(f"OCI runtime exec failed: {e}: unknown")
        inst.running = True
        svc.events.emit(
            "container",
            f"exec_start: {' '.join(inst.config['Cmd'])}",
            c.id,
            {**svc.attrs(c), "execID": inst.id},
        )
        return io

    async def _task_gone(self, c: Container, pid: Any) -> bool:
        """Whether the task an exec was started in has stopped or been replaced.

        The init's own pid answers first: a shim reports a dead init as running until
        its output is drained (up to seconds), while the runtime's exec into the dying
        namespaces fails at once (ENOMEM from fork, "exited before it was ready"); a
        failure that came a moment before the death gets half a second to show it."""
        for _ in range(5):
            if isinstance(pid, int) and pid > 0 and not _alive(pid):
                return True
            try:
                st = await self.containers.sup().task_state(c.id)
            except (FailedPrecondition, NotFound):
                return True  # a shim going away with its task
            except SkiffError:
                return False
            if st is None or st.status == 3 or st.pid != pid:  # 3: STOPPED
                return True
            await asyncio.sleep(0.1)
        return False

    async def _exited(self, inst: ExecInstance, code: int) -> None:
        io = inst.io
        if io is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(io.done.wait(), 2.0)
            io.close()
            io.remove_files()
        with contextlib.suppress(SkiffError):
            await self.containers.sup().delete_process(inst.container.id, inst.id)
        inst.exit_code = code
        inst.running = False
        inst.exited.set()
        self.containers.events.emit(
            "container",
            "exec_die",
            inst.container.id,
            {**self.containers.attrs(inst.container), "execID": inst.id, "exitCode": str(code)},
        )

    async def resize(self, inst: ExecInstance, w: int, h: int) -> None:
        if not inst.running:
            raise Conflict(f"Exec {inst.id} is not running")
        await self.containers.sup().resize(inst.container.id, inst.id, w, h)

    async def run_capture(self, c: Container, cmd: list[str]) -> tuple[int, str]:
        """Run cmd in the container and return (exit code, output): healthchecks."""
        inst = self.create(c.id, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        chunks: list[bytes] = []
        try:
            await self.start(inst, False, [lambda s, d: chunks.append(d) if s else None])
            await inst.exited.wait()
        finally:
            self.execs.pop(inst.id, None)
            ids = c.data.get("ExecIDs") or []
            c.data["ExecIDs"] = [i for i in ids if i != inst.id] or None
        return int(inst.exit_code or 0), b"".join(chunks).decode(errors="replace")

    def forget_container(self, cid: str) -> None:
        for eid, inst in list(self.execs.items()):
            if inst.container.id == cid:
                del self.execs[eid]


def _alive(pid: int) -> bool:
    """Whether pid is a live process (not gone, not a zombie); the shims run on this host."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")
