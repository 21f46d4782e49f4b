"""containerd.services.tasks.v1: a task is a container's running process
tree, served by its shim through the task manager."""

from __future__ import annotations

import builtins

from skiff.containerd.metadata.db import AnyValue
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core
from skiff.containerd.tasks.manager import CreateOptions, ProcessState, TaskManager
from skiff.errors import NotFound
from skiff.ttrpc.task import ProcessInfo


class TasksService:
    def __init__(self, core: Core, manager: TaskManager) -> None:
        self.core = core
        self.manager = manager

    def create(self, cid: str, opts: CreateOptions) -> int:
        ns = required_namespace()
        try:
            container = self.core.meta.get_container(ns, cid)
        except NotFound:
            raise NotFound(f"container {cid!r}: not found")
        return self.manager.create(ns, container, opts)

    def start(self, cid: str, exec_id: str = "") -> int:
        return self.manager.start(required_namespace(), cid, exec_id)

    def delete(self, cid: str, exec_id: str = "") -> ProcessState:
        return self.manager.delete(required_namespace(), cid, exec_id)

    def get(self, cid: str, exec_id: str = "") -> ProcessState:
        return self.manager.state(required_namespace(), cid, exec_id)

    def list(self) -> builtins.list[ProcessState]:
        return self.manager.list(required_namespace())

    def kill(self, cid: str, signal: int, exec_id: str = "", all: bool = False) -> None:
        self.manager.kill(required_namespace(), cid, signal, exec_id, all)

    def exec(
        self,
        cid: str,
        exec_id: str,
        spec: AnyValue | None,
        *,
        stdin: str = "",
        stdout: str = "",
        stderr: str = "",
        terminal: bool = False,
    ) -> None:
        self.manager.exec(
            required_namespace(),
            cid,
            exec_id,
            spec,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
        )

    def resize_pty(self, cid: str, exec_id: str, width: int, height: int) -> None:
        self.manager.resize_pty(required_namespace(), cid, exec_id, width, height)

    def close_io(self, cid: str, exec_id: str = "", stdin: bool = True) -> None:
        self.manager.close_io(required_namespace(), cid, exec_id, stdin)

    def pause(self, cid: str) -> None:
        self.manager.pause(required_namespace(), cid)

    def resume(self, cid: str) -> None:
        self.manager.resume(required_namespace(), cid)

    def pids(self, cid: str) -> builtins.list[ProcessInfo]:
        return self.manager.pids(required_namespace(), cid)

    def update(self, cid: str, resources: AnyValue | None) -> None:
        self.manager.update(required_namespace(), cid, resources)

    def metrics(self, cids: builtins.list[str]) -> builtins.list[tuple[str, AnyValue | None]]:
        ns = required_namespace()
        out = []
        for cid in cids:
            try:
                out.append((cid, self.manager.stats(ns, cid)))
            except NotFound:
                continue
        return out

    def wait(self, cid: str, exec_id: str = "") -> tuple[int, int]:
        return self.manager.wait(required_namespace(), cid, exec_id)
