"""The objects the supervisor client hands out: plain frozen dataclasses
mirroring containerd's API messages, so callers never touch protobuf."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skiff.oci.image import Descriptor


@dataclass(frozen=True, slots=True)
class Version:
    version: str
    revision: str


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mount:
    type: str
    source: str
    target: str = ""
    options: Sequence[str] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    name: str
    options_type: str = ""  # the Any type URL of the options, if any
    options: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    id: str
    image: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    runtime: Runtime = field(default_factory=lambda: Runtime(name=""))
    spec: Mapping[str, Any] | None = None
    snapshotter: str = ""
    snapshot_key: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None
    extensions: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    name: str
    target: Descriptor
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ContentInfo:
    digest: str
    size: int
    created_at: datetime | None = None
    updated_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestStatus:
    ref: str
    offset: int
    total: int
    expected: str = ""
    started_at: datetime | None = None
    updated_at: datetime | None = None


class SnapshotKind(enum.IntEnum):
    UNKNOWN = 0
    VIEW = 1
    ACTIVE = 2
    COMMITTED = 3

    def __str__(self) -> str:
        return self.name.capitalize()


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    name: str
    parent: str = ""
    kind: SnapshotKind = SnapshotKind.UNKNOWN
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    size: int
    inodes: int


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    RUNNING = 2
    STOPPED = 3
    PAUSED = 4
    PAUSING = 5

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True, kw_only=True)
class Process:
    container_id: str
    id: str = ""
    pid: int = 0
    status: TaskStatus = TaskStatus.UNKNOWN
    stdin: str = ""
    stdout: str = ""
    stderr: str = ""
    terminal: bool = False
    exit_status: int = 0
    exited_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    info_type: str = ""  # the Any type URL of the per-process details
    info: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExitStatus:
    code: int
    exited_at: datetime | None = None
    pid: int = 0
    id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Metric:
    id: str
    timestamp: datetime | None
    data_type: str
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    id: str
    created_at: datetime | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LeaseResource:
    id: str
    type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Plugin:
    type: str
    id: str
    requires: Sequence[str] = ()
    platforms: Sequence[str] = ()
    exports: Mapping[str, str] = field(default_factory=dict)
    capabilities: Sequence[str] = ()
    init_error: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """One event; `event` is the decoded payload as a dict (proto field names),
    or None when the type is not one we know."""

    timestamp: datetime | None
    namespace: str
    topic: str
    event_type: str
    event: Mapping[str, Any] | None
    raw: bytes = b""

    def event_json(self) -> str:
        return json.dumps(self.event, separators=(",", ":")) if self.event is not None else "{}"


def utc(ts: datetime | None) -> datetime | None:
    return ts.astimezone(UTC) if ts is not None else None
