"""containerd.task.v2 (the shim v2 Task API) and the types it uses, as codec messages.

Mirrors src/skiff/api/proto/ field for field. Lives beside the codec in
skiff.ttrpc rather than in skiff.api because the layer contract keeps those two
packages independent, and both skiff-shim and skiff-containerd speak it.
"""

from __future__ import annotations

from skiff.ttrpc.protobuf import (
    BOOL,
    BYTES,
    ENUM,
    STRING,
    UINT32,
    Any_,
    Field,
    Message,
    Timestamp,
)

SERVICE = "containerd.task.v2.Task"

# containerd.v1.types.Status
UNKNOWN = 0
CREATED = 1
RUNNING = 2
STOPPED = 3
PAUSED = 4
PAUSING = 5


class Mount(Message):
    NAME = "containerd.types.Mount"
    type: str
    source: str
    target: str
    options: list[str]
    FIELDS = (
        Field(1, "type", STRING),
        Field(2, "source", STRING),
        Field(3, "target", STRING),
        Field(4, "options", STRING, repeated=True),
    )


class ProcessInfo(Message):
    NAME = "containerd.v1.types.ProcessInfo"
    pid: int
    info: Any_ | None
    FIELDS = (Field(1, "pid", UINT32), Field(2, "info", Any_))


class CreateTaskRequest(Message):
    NAME = "containerd.task.v2.CreateTaskRequest"
    id: str
    bundle: str
    rootfs: list[Mount]
    terminal: bool
    stdin: str
    stdout: str
    stderr: str
    checkpoint: str
    parent_checkpoint: str
    options: Any_ | None
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "bundle", STRING),
        Field(3, "rootfs", Mount, repeated=True),
        Field(4, "terminal", BOOL),
        Field(5, "stdin", STRING),
        Field(6, "stdout", STRING),
        Field(7, "stderr", STRING),
        Field(8, "checkpoint", STRING),
        Field(9, "parent_checkpoint", STRING),
        Field(10, "options", Any_),
    )


class CreateTaskResponse(Message):
    NAME = "containerd.task.v2.CreateTaskResponse"
    pid: int
    FIELDS = (Field(1, "pid", UINT32),)


class DeleteRequest(Message):
    NAME = "containerd.task.v2.DeleteRequest"
    id: str
    exec_id: str
    FIELDS = (Field(1, "id", STRING), Field(2, "exec_id", STRING))


class DeleteResponse(Message):
    NAME = "containerd.task.v2.DeleteResponse"
    pid: int
    exit_status: int
    exited_at: Timestamp | None
    FIELDS = (
        Field(1, "pid", UINT32),
        Field(2, "exit_status", UINT32),
        Field(3, "exited_at", Timestamp),
    )


class ExecProcessRequest(Message):
    NAME = "containerd.task.v2.ExecProcessRequest"
    id: str
    exec_id: str
    terminal: bool
    stdin: str
    stdout: str
    stderr: str
    spec: Any_ | None
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "exec_id", STRING),
        Field(3, "terminal", BOOL),
        Field(4, "stdin", STRING),
        Field(5, "stdout", STRING),
        Field(6, "stderr", STRING),
        Field(7, "spec", Any_),
    )


class ExecProcessResponse(Message):
    NAME = "containerd.task.v2.ExecProcessResponse"
    FIELDS = ()


class ResizePtyRequest(Message):
    NAME = "containerd.task.v2.ResizePtyRequest"
    id: str
    exec_id: str
    width: int
    height: int
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "exec_id", STRING),
        Field(3, "width", UINT32),
        Field(4, "height", UINT32),
    )


class StateRequest(Message):
    NAME = "containerd.task.v2.StateRequest"
    id: str
    exec_id: str
    FIELDS = (Field(1, "id", STRING), Field(2, "exec_id", STRING))


class StateResponse(Message):
    NAME = "containerd.task.v2.StateResponse"
    id: str
    bundle: str
    pid: int
    status: int
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    exit_status: int
    exited_at: Timestamp | None
    exec_id: str
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "bundle", STRING),
        Field(3, "pid", UINT32),
        Field(4, "status", ENUM),
        Field(5, "stdin", STRING),
        Field(6, "stdout", STRING),
        Field(7, "stderr", STRING),
        Field(8, "terminal", BOOL),
        Field(9, "exit_status", UINT32),
        Field(10, "exited_at", Timestamp),
        Field(11, "exec_id", STRING),
    )


class KillRequest(Message):
    NAME = "containerd.task.v2.KillRequest"
    id: str
    exec_id: str
    signal: int
    all: bool
    FIELDS = (
        Field(1, "id", STRING),
        Field(2, "exec_id", STRING),
        Field(3, "signal", UINT32),
        Field(4, "all", BOOL),
    )


class CloseIORequest(Message):
    NAME = "containerd.task.v2.CloseIORequest"
    id: str
    exec_id: str
    stdin: bool
    FIELDS = (Field(1, "id", STRING), Field(2, "exec_id", STRING), Field(3, "stdin", BOOL))


class PidsRequest(Message):
    NAME = "containerd.task.v2.PidsRequest"
    id: str
    FIELDS = (Field(1, "id", STRING),)


class PidsResponse(Message):
    NAME = "containerd.task.v2.PidsResponse"
    processes: list[ProcessInfo]
    FIELDS = (Field(1, "processes", ProcessInfo, repeated=True),)


class CheckpointTaskRequest(Message):
    NAME = "containerd.task.v2.CheckpointTaskRequest"
    id: str
    path: str
    options: Any_ | None
    FIELDS = (Field(1, "id", STRING), Field(2, "path", STRING), Field(3, "options", Any_))


class UpdateTaskRequest(Message):
    NAME = "containerd.task.v2.UpdateTaskRequest"
    id: str
    resources: Any_ | None
    FIELDS = (Field(1, "id", STRING), Field(2, "resources", Any_))


class StartRequest(Message):
    NAME = "containerd.task.v2.StartRequest"
    id: str
    exec_id: str
    FIELDS = (Field(1, "id", STRING), Field(2, "exec_id", STRING))


class StartResponse(Message):
    NAME = "containerd.task.v2.StartResponse"
    pid: int
    FIELDS = (Field(1, "pid", UINT32),)


class WaitRequest(Message):
    NAME = "containerd.task.v2.WaitRequest"
    id: str
    exec_id: str
    FIELDS = (Field(1, "id", STRING), Field(2, "exec_id", STRING))


class WaitResponse(Message):
    NAME = "containerd.task.v2.WaitResponse"
    exit_status: int
    exited_at: Timestamp | None
    FIELDS = (Field(1, "exit_status", UINT32), Field(2, "exited_at", Timestamp))


class StatsRequest(Message):
    NAME = "containerd.task.v2.StatsRequest"
    id: str
    FIELDS = (Field(1, "id", STRING),)


class StatsResponse(Message):
    NAME = "containerd.task.v2.StatsResponse"
    stats: Any_ | None
    FIELDS = (Field(1, "stats", Any_),)


class ConnectRequest(Message):
    NAME = "containerd.task.v2.ConnectRequest"
    id: str
    FIELDS = (Field(1, "id", STRING),)


class ConnectResponse(Message):
    NAME = "containerd.task.v2.ConnectResponse"
    shim_pid: int
    task_pid: int
    version: str
    FIELDS = (
        Field(1, "shim_pid", UINT32),
        Field(2, "task_pid", UINT32),
        Field(3, "version", STRING),
    )


class ShutdownRequest(Message):
    NAME = "containerd.task.v2.ShutdownRequest"
    id: str
    now: bool
    FIELDS = (Field(1, "id", STRING), Field(2, "now", BOOL))


class PauseRequest(Message):
    NAME = "containerd.task.v2.PauseRequest"
    id: str
    FIELDS = (Field(1, "id", STRING),)


class ResumeRequest(Message):
    NAME = "containerd.task.v2.ResumeRequest"
    id: str
    FIELDS = (Field(1, "id", STRING),)


# --- runtime options carried in CreateTaskRequest.options -------------------------


class RuncOptions(Message):
    """containerd.runc.v1.Options: what containerd-shim-runc-v2 takes; we read binary_name and root."""

    NAME = "containerd.runc.v1.Options"
    no_pivot_root: bool
    no_new_keyring: bool
    shim_cgroup: str
    io_uid: int
    io_gid: int
    binary_name: str
    root: str
    criu_path: str
    systemd_cgroup: bool
    criu_image_path: str
    criu_work_path: str
    FIELDS = (
        Field(1, "no_pivot_root", BOOL),
        Field(2, "no_new_keyring", BOOL),
        Field(3, "shim_cgroup", STRING),
        Field(4, "io_uid", UINT32),
        Field(5, "io_gid", UINT32),
        Field(6, "binary_name", STRING),
        Field(7, "root", STRING),
        Field(8, "criu_path", STRING),
        Field(9, "systemd_cgroup", BOOL),
        Field(10, "criu_image_path", STRING),
        Field(11, "criu_work_path", STRING),
    )


class ProcessDetails(Message):
    """containerd.runc.v1.ProcessDetails: ProcessInfo.info for an exec'd process."""

    NAME = "containerd.runc.v1.ProcessDetails"
    exec_id: str
    FIELDS = (Field(1, "exec_id", STRING),)


class RuntimeOptions(Message):
    """runtimeoptions.v1.Options: what `ctr run --runtime-config-path` sends."""

    NAME = "runtimeoptions.v1.Options"
    type_url: str
    config_path: str
    config_body: bytes
    FIELDS = (
        Field(1, "type_url", STRING),
        Field(2, "config_path", STRING),
        Field(3, "config_body", BYTES),
    )
