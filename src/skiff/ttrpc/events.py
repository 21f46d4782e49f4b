"""containerd.events task events and the ttrpc Events.Forward call, as codec messages.

What a shim publishes to its supervisor (skiff-shim -> containerd or
skiff-containerd). Topics are containerd's ("/tasks/exit", ...).
"""

from __future__ import annotations

from skiff.ttrpc.protobuf import BOOL, ENUM, STRING, UINT32, Any_, Field, Message, Timestamp
from skiff.ttrpc.task import Mount

SERVICE = "containerd.services.events.ttrpc.v1.Events"


class TaskIO(Message):
    NAME = "containerd.events.TaskIO"
    stdin: str
    stdout: str
    stderr: str
    terminal: bool
    FIELDS = (
        Field(1, "stdin", STRING),
        Field(2, "stdout", STRING),
        Field(3, "stderr", STRING),
        Field(4, "terminal", BOOL),
    )


class TaskCreate(Message):
    NAME = "containerd.events.TaskCreate"
    TOPIC = "/tasks/create"
    container_id: str
    bundle: str
    rootfs: list[Mount]
    io: TaskIO | None
    checkpoint: str
    pid: int
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(2, "bundle", STRING),
        Field(3, "rootfs", Mount, repeated=True),
        Field(4, "io", TaskIO),
        Field(5, "checkpoint", STRING),
        Field(6, "pid", UINT32),
    )


class TaskStart(Message):
    NAME = "containerd.events.TaskStart"
    TOPIC = "/tasks/start"
    container_id: str
    pid: int
    FIELDS = (Field(1, "container_id", STRING), Field(2, "pid", UINT32))


class TaskDelete(Message):
    NAME = "containerd.events.TaskDelete"
    TOPIC = "/tasks/delete"
    container_id: str
    pid: int
    exit_status: int
    exited_at: Timestamp | None
    id: str
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(2, "pid", UINT32),
        Field(3, "exit_status", UINT32),
        Field(4, "exited_at", Timestamp),
        Field(5, "id", STRING),
    )


class TaskExit(Message):
    NAME = "containerd.events.TaskExit"
    TOPIC = "/tasks/exit"
    container_id: str
    id: str
    pid: int
    exit_status: int
    exited_at: Timestamp | None
    exit_reason: int
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(2, "id", STRING),
        Field(3, "pid", UINT32),
        Field(4, "exit_status", UINT32),
        Field(5, "exited_at", Timestamp),
        Field(6, "exit_reason", ENUM),
    )


class TaskOOM(Message):
    NAME = "containerd.events.TaskOOM"
    TOPIC = "/tasks/oom"
    container_id: str
    FIELDS = (Field(1, "container_id", STRING),)


class TaskExecAdded(Message):
    NAME = "containerd.events.TaskExecAdded"
    TOPIC = "/tasks/exec-added"
    container_id: str
    exec_id: str
    FIELDS = (Field(1, "container_id", STRING), Field(2, "exec_id", STRING))


class TaskExecStarted(Message):
    NAME = "containerd.events.TaskExecStarted"
    TOPIC = "/tasks/exec-started"
    container_id: str
    exec_id: str
    pid: int
    FIELDS = (
        Field(1, "container_id", STRING),
        Field(2, "exec_id", STRING),
        Field(3, "pid", UINT32),
    )


class TaskPaused(Message):
    NAME = "containerd.events.TaskPaused"
    TOPIC = "/tasks/paused"
    container_id: str
    FIELDS = (Field(1, "container_id", STRING),)


class TaskResumed(Message):
    NAME = "containerd.events.TaskResumed"
    TOPIC = "/tasks/resumed"
    container_id: str
    FIELDS = (Field(1, "container_id", STRING),)


class Envelope(Message):
    NAME = "containerd.services.events.ttrpc.v1.Envelope"
    timestamp: Timestamp | None
    namespace: str
    topic: str
    event: Any_ | None
    FIELDS = (
        Field(1, "timestamp", Timestamp),
        Field(2, "namespace", STRING),
        Field(3, "topic", STRING),
        Field(4, "event", Any_),
    )


class ForwardRequest(Message):
    NAME = "containerd.services.events.ttrpc.v1.ForwardRequest"
    envelope: Envelope | None
    FIELDS = (Field(1, "envelope", Envelope),)
