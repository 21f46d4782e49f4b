"""The containerd calls the container service makes, over the generated stubs.

skiffd -> (containerd gRPC API) -> skiff-containerd or Debian's containerd.
An asyncio gRPC channel (one per daemon) so a call never blocks the event
loop; every call carries the engine's namespace and maps gRPC failures to
skiff.errors. Only what containers and exec need lives here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, field_mask_pb2

from skiff import errors
from skiff.api.gen.containerd.events import task_pb2 as task_events
from skiff.api.gen.containerd.services.containers.v1 import containers_pb2 as cpb
from skiff.api.gen.containerd.services.containers.v1 import containers_pb2_grpc as cgrpc
from skiff.api.gen.containerd.services.content.v1 import content_pb2 as contentpb
from skiff.api.gen.containerd.services.content.v1 import content_pb2_grpc as contentgrpc
from skiff.api.gen.containerd.services.events.v1 import events_pb2 as epb
from skiff.api.gen.containerd.services.events.v1 import events_pb2_grpc as egrpc
from skiff.api.gen.containerd.services.images.v1 import images_pb2 as ipb
from skiff.api.gen.containerd.services.images.v1 import images_pb2_grpc as igrpc
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2 as spb
from skiff.api.gen.containerd.services.snapshots.v1 import snapshots_pb2_grpc as sgrpc
from skiff.api.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
from skiff.api.gen.containerd.services.tasks.v1 import tasks_pb2_grpc as tgrpc
from skiff.api.gen.containerd.types import mount_pb2

log = logging.getLogger("skiffd.containers")

# SKIFF_RUNTIME: another shim for new containers (io.containerd.runc.v2 on Debian's
# containerd), so that tests can check skiffd against containerd's own shim
RUNTIME = os.environ.get("SKIFF_RUNTIME") or "io.containerd.skiff.v1"
SNAPSHOTTER = "overlayfs"
SPEC_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/Process"
LINUX_RESOURCES_TYPE = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources"

_BY_CODE: dict[grpc.StatusCode, type[errors.SkiffError]] = {
    grpc.StatusCode.NOT_FOUND: errors.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: errors.AlreadyExists,
    grpc.StatusCode.INVALID_ARGUMENT: errors.InvalidArgument,
    grpc.StatusCode.FAILED_PRECONDITION: errors.FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: errors.Unavailable,
    grpc.StatusCode.UNIMPLEMENTED: errors.NotImplemented_,
}


@contextlib.contextmanager
def mapped() -> Iterator[None]:
    try:
        yield
    except grpc.aio.AioRpcError as e:
        cls = _BY_CODE.get(e.code(), errors.Internal)
        raise cls(e.details() or e.code().name.lower()) from None


@dataclass(frozen=True, slots=True)
class MountSpec:
    type: str
    source: str
    options: Sequence[str]


@dataclass(frozen=True, slots=True)
class TaskState:
    pid: int
    status: int  # containerd.v1.types.Status: 1 created, 2 running, 3 stopped, 4 paused
    exit_status: int
    exited_at: float


@dataclass(frozen=True, slots=True)
class Exit:
    container_id: str
    id: str
    pid: int
    exit_status: int
    exited_at: float


def _ts(ts: Any) -> float:
    return float(ts.seconds) + ts.nanos / 1e9 if ts is not None else 0.0


class SupervisorAPI:
    def __init__(self, address: str, namespace: str):
        target = address if address.startswith("unix:") else f"unix:{address}"
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", 16 << 20),
                ("grpc.max_send_message_length", 16 << 20),
                ("grpc.enable_http_proxy", 0),
            ],
        )
        self.namespace = namespace
        self.md = (("containerd-namespace", namespace),)
        self.containers = cgrpc.ContainersStub(self.channel)
        self.tasks = tgrpc.TasksStub(self.channel)
        self.snapshots = sgrpc.SnapshotsStub(self.channel)
        self.images = igrpc.ImagesStub(self.channel)
        self.content = contentgrpc.ContentStub(self.channel)
        self.events = egrpc.EventsStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    # -- images and content (until the image service answers for us) -------

    async def image_target(self, name: str) -> tuple[str, str, int]:
        with mapped():
            r = await self.images.Get(ipb.GetImageRequest(name=name), metadata=self.md)
        t = r.image.target
        return t.media_type, t.digest, t.size

    async def image_names(self) -> list[tuple[str, str]]:
        with mapped():
            r = await self.images.List(ipb.ListImagesRequest(), metadata=self.md)
        return [(i.name, i.target.digest) for i in r.images]

    async def read_blob(self, digest: str) -> bytes:
        parts = []
        with mapped():
            async for r in self.content.Read(
                contentpb.ReadContentRequest(digest=digest), metadata=self.md
            ):
                parts.append(r.data)
        return b"".join(parts)

    # -- snapshots ----------------------------------------------------------

    async def prepare_snapshot(self, key: str, parent: str) -> list[MountSpec]:
        with mapped():
            r = await self.snapshots.Prepare(
                spb.PrepareSnapshotRequest(snapshotter=SNAPSHOTTER, key=key, parent=parent),
                metadata=self.md,
            )
        return [MountSpec(m.type, m.source, list(m.options)) for m in r.mounts]

    async def snapshot_mounts(self, key: str) -> list[MountSpec]:
        with mapped():
            r = await self.snapshots.Mounts(
                spb.MountsRequest(snapshotter=SNAPSHOTTER, key=key), metadata=self.md
            )
        return [MountSpec(m.type, m.source, list(m.options)) for m in r.mounts]

    async def remove_snapshot(self, key: str) -> None:
        with mapped():
            await self.snapshots.Remove(
                spb.RemoveSnapshotRequest(snapshotter=SNAPSHOTTER, key=key), metadata=self.md
            )

    async def snapshot_exists(self, key: str) -> bool:
        try:
            with mapped():
                await self.snapshots.Stat(
                    spb.StatSnapshotRequest(snapshotter=SNAPSHOTTER, key=key), metadata=self.md
                )
            return True
        except errors.NotFound:
            return False

    # -- containers ---------------------------------------------------------

    async def create_container(
        self, cid: str, image: str, spec: dict[str, Any], labels: dict[str, str]
    ) -> None:
        c = cpb.Container(
            id=cid,
            image=image,
            labels=labels,
            runtime=cpb.Container.Runtime(name=RUNTIME),
            spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode()),
            snapshotter=SNAPSHOTTER,
            snapshot_key=cid,
        )
        with mapped():
            await self.containers.Create(cpb.CreateContainerRequest(container=c), metadata=self.md)

    async def update_spec(self, cid: str, spec: dict[str, Any]) -> None:
        c = cpb.Container(
            id=cid, spec=any_pb2.Any(type_url=SPEC_TYPE, value=json.dumps(spec).encode())
        )
        with mapped():
            await self.containers.Update(
                cpb.UpdateContainerRequest(
                    container=c, update_mask=field_mask_pb2.FieldMask(paths=["spec"])
                ),
                metadata=self.md,
            )

    async def container_ids(self) -> set[str]:
        with mapped():
            r = await self.containers.List(cpb.ListContainersRequest(), metadata=self.md)
        return {c.id for c in r.containers}

    async def delete_container(self, cid: str) -> None:
        with mapped():
            await self.containers.Delete(cpb.DeleteContainerRequest(id=cid), metadata=self.md)

    # -- tasks --------------------------------------------------------------

    async def create_task(
        self,
        cid: str,
        rootfs: Sequence[MountSpec],
        stdin: str,
        stdout: str,
        stderr: str,
        terminal: bool,
    ) -> int:
        req = tpb.CreateTaskRequest(
            container_id=cid,
            rootfs=[
                mount_pb2.Mount(type=m.type, source=m.source, options=m.options) for m in rootfs
            ],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
        )
        with mapped():
            r = await self.tasks.Create(req, metadata=self.md)
        return int(r.pid)

    async def start(self, cid: str, exec_id: str = "") -> int:
        with mapped():
            r = await self.tasks.Start(
                tpb.StartRequest(container_id=cid, exec_id=exec_id), metadata=self.md
            )
        return int(r.pid)

    async def delete_task(self, cid: str) -> tuple[int, float]:
        with mapped():
            r = await self.tasks.Delete(tpb.DeleteTaskRequest(container_id=cid), metadata=self.md)
        return int(r.exit_status), _ts(r.exited_at)

    async def delete_process(self, cid: str, exec_id: str) -> None:
        with mapped():
            await self.tasks.DeleteProcess(
                tpb.DeleteProcessRequest(container_id=cid, exec_id=exec_id), metadata=self.md
            )

    async def task_state(self, cid: str, exec_id: str = "") -> TaskState | None:
        try:
            with mapped():
                r = await self.tasks.Get(
                    tpb.GetRequest(container_id=cid, exec_id=exec_id), metadata=self.md
                )
        except errors.NotFound:
            return None
        p = r.process
        return TaskState(int(p.pid), int(p.status), int(p.exit_status), _ts(p.exited_at))

    async def kill(self, cid: str, sig: int, exec_id: str = "", all: bool = False) -> None:
        with mapped():
            await self.tasks.Kill(
                tpb.KillRequest(container_id=cid, exec_id=exec_id, signal=sig, all=all),
                metadata=self.md,
            )

    async def exec(
        self,
        cid: str,
        exec_id: str,
        process: dict[str, Any],
        stdin: str,
        stdout: str,
        stderr: str,
        terminal: bool,
    ) -> None:
        req = tpb.ExecProcessRequest(
            container_id=cid,
            exec_id=exec_id,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            terminal=terminal,
            spec=any_pb2.Any(type_url=PROCESS_TYPE, value=json.dumps(process).encode()),
        )
        with mapped():
            await self.tasks.Exec(req, metadata=self.md)

    async def resize(self, cid: str, exec_id: str, width: int, height: int) -> None:
        with mapped():
            await self.tasks.ResizePty(
                tpb.ResizePtyRequest(container_id=cid, exec_id=exec_id, width=width, height=height),
                metadata=self.md,
            )

    async def close_stdin(self, cid: str, exec_id: str = "") -> None:
        with mapped():
            await self.tasks.CloseIO(
                tpb.CloseIORequest(container_id=cid, exec_id=exec_id, stdin=True),
                metadata=self.md,
            )

    async def pause(self, cid: str) -> None:
        with mapped():
            await self.tasks.Pause(tpb.PauseTaskRequest(container_id=cid), metadata=self.md)

    async def resume(self, cid: str) -> None:
        with mapped():
            await self.tasks.Resume(tpb.ResumeTaskRequest(container_id=cid), metadata=self.md)

    async def pids(self, cid: str) -> list[int]:
        with mapped():
            r = await self.tasks.ListPids(tpb.ListPidsRequest(container_id=cid), metadata=self.md)
        return [int(p.pid) for p in r.processes]

    async def update_resources(self, cid: str, resources: dict[str, Any]) -> None:
        with mapped():
            await self.tasks.Update(
                tpb.UpdateTaskRequest(
                    container_id=cid,
                    resources=any_pb2.Any(
                        type_url=LINUX_RESOURCES_TYPE, value=json.dumps(resources).encode()
                    ),
                ),
                metadata=self.md,
            )

    async def wait(self, cid: str, exec_id: str = "") -> tuple[int, float]:
        with mapped():
            r = await self.tasks.Wait(
                tpb.WaitRequest(container_id=cid, exec_id=exec_id), metadata=self.md
            )
        return int(r.exit_status), _ts(r.exited_at)

    # -- events -------------------------------------------------------------

    async def exits(self) -> AsyncIterator[Exit]:
        """Every /tasks/exit of our namespace, as it happens."""
        req = epb.SubscribeRequest(filters=[f'topic=="/tasks/exit",namespace=="{self.namespace}"'])
        with mapped():
            async for env in self.events.Subscribe(req):
                if env.topic != "/tasks/exit":
                    continue
                ev = task_events.TaskExit()
                try:
                    ev.ParseFromString(env.event.value)
                except Exception:  # a payload we cannot read is not an exit we can act on
                    log.warning("undecodable /tasks/exit event (%s)", env.event.type_url)
                    continue
                yield Exit(
                    ev.container_id, ev.id, int(ev.pid), int(ev.exit_status), _ts(ev.exited_at)
                )
