"""A container's saved state, its lifecycle table, and how its status is read.

State lives in <root>/<id>/state.json, written to a temporary name and
renamed, so a reader never sees half of it. Not fsynced, as runc does not:
the state describes live processes, which a machine crash ends anyway, and
the root is normally on tmpfs (/run). The status is not trusted from the file: it is refreshed from
the init process (alive, same start time), the exec FIFO (still there means
created) and the freezer (paused).
"""

from __future__ import annotations

import os
import time

from skiff.errors import FailedPrecondition, InvalidArgument, NotFound
from skiff.oci import fastjson
from skiff.runtime.cgroups import Manager

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from skiff.oci.runtime_spec import Spec

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

# operation -> the statuses it is allowed from
ALLOWED = {
    "start": (CREATED,),
    "pause": (RUNNING,),
    "resume": (PAUSED,),
    "exec": (CREATED, RUNNING),
    "kill": (CREATED, RUNNING, PAUSED),
    "delete": (STOPPED,),
    "update": (CREATED, RUNNING, PAUSED),
}

EXEC_FIFO = "exec.fifo"
STATE_FILE = "state.json"


def valid_id(container_id: str) -> None:
    ok = (
        container_id
        and container_id not in (".", "..")
        and all(c.isalnum() or c in "_+-." for c in container_id)
    )
    if not ok:
        raise InvalidArgument(f"invalid container id format: {container_id}")


def proc_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e9):09d}Z"


class Container:
    """One container as the runtime knows it between invocations."""

    def __init__(self, root: str, container_id: str, data: dict[str, Any]):
        self.root = root
        self.id = container_id
        self.dir = os.path.join(root, container_id)
        self.data = data
        self.console_master: int | None = None  # held by `run` in the foreground only

    @property
    def pid(self) -> int:
        return int(self.data.get("pid", 0))

    @property
    def spec(self) -> Spec:
        spec: Spec = self.data["config"]
        return spec

    @property
    def bundle(self) -> str:
        return str(self.data["bundle"])

    def cgroups(self) -> Manager:
        cg = self.data["cgroup"]
        return Manager(dict(cg["paths"]), cg["root"], bool(cg["unified"]))

    @classmethod
    def load(cls, root: str, container_id: str) -> Container:
        valid_id(container_id)
        path = os.path.join(root, container_id, STATE_FILE)
        try:
            with open(path, "rb") as f:
                data = fastjson.loads(f.read())
        except FileNotFoundError:
            raise NotFound(f"container does not exist: {container_id}")
        except ValueError:
            raise FailedPrecondition(f"state of container {container_id} is corrupt")
        return cls(root, container_id, data)

    def save(self) -> None:
        path = os.path.join(self.dir, STATE_FILE)
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, fastjson.dumps(self.data, compact=True).encode())
        finally:
            os.close(fd)
        os.rename(tmp, path)

    def alive(self) -> bool:
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.data.get("start_time")

    def status(self) -> str:
        if not self.alive():
            return STOPPED
        if os.path.exists(os.path.join(self.dir, EXEC_FIFO)):
            return CREATED
        if self.cgroups().frozen():
            return PAUSED
        return RUNNING

    def check(self, operation: str) -> str:
        """Refresh the status and refuse an operation the lifecycle does not allow."""
        status = self.status()
        if status not in ALLOWED[operation]:
            if operation == "delete":
                raise FailedPrecondition(
                    f"cannot delete container {self.id} that is not stopped: {status}"
                )
            if operation == "start":
                raise FailedPrecondition(f"cannot start a container that is {status}")
            if operation in ("kill", "exec") and status == STOPPED:
                raise FailedPrecondition("container not running")
            raise FailedPrecondition(
                f"container {self.id} is {status}, not " + " or ".join(ALLOWED[operation])
            )
        return status

    def oci_state(self, status: str | None = None) -> dict[str, Any]:
        """The OCI state document (what hooks get and `state` prints)."""
        status = status or self.status()
        state: dict[str, Any] = {
            "ociVersion": self.spec.get("ociVersion", "1.0.2-dev"),
            "id": self.id,
            "pid": self.pid if status != STOPPED else 0,
            "status": status,
            "bundle": self.bundle,
            "rootfs": self.data["rootfs"],
            "created": self.data["created"],
        }
        annotations = self.spec.get("annotations")
        if annotations:
            state["annotations"] = annotations
        state["owner"] = self.data.get("owner", "")
        return state

    def hook_state(self, status: str) -> dict[str, Any]:
        state = self.oci_state(status)
        state.pop("owner", None)
        state.pop("rootfs", None)
        state.pop("created", None)
        return state
