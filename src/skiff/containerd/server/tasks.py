"""gRPC adapter: containerd.services.tasks.v1.Tasks."""

from __future__ import annotations

import time
from typing import Any

from google.protobuf import any_pb2, empty_pb2

from skiff.api.gen.containerd.services.tasks.v1 import tasks_pb2 as pb
from skiff.api.gen.containerd.types import metrics_pb2
from skiff.api.gen.containerd.types.task import task_pb2
from skiff.containerd.server.common import any_in, any_out, ts, ttrpc_mounts_in, unary
from skiff.containerd.services.tasks import TasksService
from skiff.containerd.tasks.manager import CreateOptions, ProcessState
from skiff.errors import NotImplemented_


def _process(p: ProcessState, cid: str) -> Any:
    return task_pb2.Process(
        container_id=cid,
        id=p.exec_id or p.id,
        pid=p.pid,
        status=p.status,
        stdin=p.stdin,
        stdout=p.stdout,
        stderr=p.stderr,
        terminal=p.terminal,
        exit_status=p.exit_status,
        exited_at=ts(p.exited_at),
    )


class TasksAdapter:
    def __init__(self, service: TasksService) -> None:
        self.s = service

    @unary
    def Create(self, req: Any, ctx: Any) -> Any:
        if req.HasField("checkpoint") and req.checkpoint.digest:
            raise NotImplemented_("task checkpoints are not supported")
        opts = CreateOptions(
            rootfs=ttrpc_mounts_in(req.rootfs),
            stdin=req.stdin,
            stdout=req.stdout,
            stderr=req.stderr,
            terminal=req.terminal,
            options=any_in(req.options) if req.HasField("options") else None,
        )
        pid = self.s.create(req.container_id, opts)
        return pb.CreateTaskResponse(container_id=req.container_id, pid=pid)

    @unary
    def Start(self, req: Any, ctx: Any) -> Any:
        return pb.StartResponse(pid=self.s.start(req.container_id, req.exec_id))

    @unary
    def Delete(self, req: Any, ctx: Any) -> Any:
        p = self.s.delete(req.container_id)
        return pb.DeleteResponse(
            id=req.container_id, pid=p.pid, exit_status=p.exit_status, exited_at=ts(p.exited_at)
        )

    @unary
    def DeleteProcess(self, req: Any, ctx: Any) -> Any:
        p = self.s.delete(req.container_id, req.exec_id)
        return pb.DeleteResponse(
            id=req.exec_id, pid=p.pid, exit_status=p.exit_status, exited_at=ts(p.exited_at)
        )

    @unary
    def Get(self, req: Any, ctx: Any) -> Any:
        return pb.GetResponse(
            process=_process(self.s.get(req.container_id, req.exec_id), req.container_id)
        )

    @unary
    def List(self, req: Any, ctx: Any) -> Any:
        return pb.ListTasksResponse(tasks=[_process(p, p.id) for p in self.s.list()])

    @unary
    def Kill(self, req: Any, ctx: Any) -> Any:
        self.s.kill(req.container_id, req.signal, req.exec_id, req.all)
        return empty_pb2.Empty()

    @unary
    def Exec(self, req: Any, ctx: Any) -> Any:
        self.s.exec(
            req.container_id,
            req.exec_id,
            any_in(req.spec),
            stdin=req.stdin,
            stdout=req.stdout,
            stderr=req.stderr,
            terminal=req.terminal,
        )
        return empty_pb2.Empty()

    @unary
    def ResizePty(self, req: Any, ctx: Any) -> Any:
        self.s.resize_pty(req.container_id, req.exec_id, req.width, req.height)
        return empty_pb2.Empty()

    @unary
    def CloseIO(self, req: Any, ctx: Any) -> Any:
        self.s.close_io(req.container_id, req.exec_id, req.stdin)
        return empty_pb2.Empty()

    @unary
    def Pause(self, req: Any, ctx: Any) -> Any:
        self.s.pause(req.container_id)
        return empty_pb2.Empty()

    @unary
    def Resume(self, req: Any, ctx: Any) -> Any:
        self.s.resume(req.container_id)
        return empty_pb2.Empty()

    @unary
    def ListPids(self, req: Any, ctx: Any) -> Any:
        procs = [
            task_pb2.ProcessInfo(
                pid=p.pid,
                info=any_pb2.Any(type_url=p.info.type_url, value=p.info.value) if p.info else None,
            )
            for p in self.s.pids(req.container_id)
        ]
        return pb.ListPidsResponse(processes=procs)

    @unary
    def Checkpoint(self, req: Any, ctx: Any) -> Any:
        raise NotImplemented_("task checkpoints are not supported")

    @unary
    def Update(self, req: Any, ctx: Any) -> Any:
        self.s.update(req.container_id, any_in(req.resources))
        return empty_pb2.Empty()

    @unary
    def Metrics(self, req: Any, ctx: Any) -> Any:
        ids = []
        for f in req.filters:
            for part in f.split(","):
                key, _, value = part.partition("==")
                if key.strip() in ("id", "container_id"):
                    ids.append(value.strip().strip('"'))
        if not ids:
            ids = [p.id for p in self.s.list()]
        out = []
        for cid, data in self.s.metrics(ids):
            now = ts(time.time_ns())
            out.append(metrics_pb2.Metric(timestamp=now, id=cid, data=any_out(data)))
        return pb.MetricsResponse(metrics=out)

    @unary
    def Wait(self, req: Any, ctx: Any) -> Any:
        status, at = self.s.wait(req.container_id, req.exec_id)
        return pb.WaitResponse(exit_status=status, exited_at=ts(at))


def register(server: Any, service: TasksService) -> None:
    server.add_service(pb.DESCRIPTOR.services_by_name["Tasks"], TasksAdapter(service))
