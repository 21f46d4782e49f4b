"""Container endpoints of the Engine API (/containers/...), over the container service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

from skiff.engine.containers import archive as archive_mod
from skiff.engine.containers import rootfs as rootfs_mod
from skiff.engine.containers import stats as stats_mod
from skiff.engine.containers import views
from skiff.engine.containers.logs import follow_entries, parse_time, rfc3339
from skiff.engine.containers.model import Container, Status
from skiff.engine.containers.service import ContainerService
from skiff.engine.daemon import Daemon
from skiff.engine.events import parse_filters
from skiff.engine.http.server import (
    HijackResponse,
    Request,
    Response,
    Router,
    StreamResponse,
    json_response,
    no_content,
    wants_upgrade,
)
from skiff.engine.volumes.service import VolumeService
from skiff.errors import Conflict, InvalidArgument, SkiffError

log = logging.getLogger("skiffd.containers")

STDIN, STDOUT, STDERR = 0, 1, 2
_STREAM_IDS = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR}


def frame(stream: str, data: bytes) -> bytes:
    """Docker's stdcopy framing: [stream, 0, 0, 0, size uint32 BE] + payload."""
    return struct.pack(">BxxxI", _STREAM_IDS.get(stream, STDOUT), len(data)) + data


def parse_detach_keys(text: str | None) -> bytes:
    if text is None:
        return b"\x10\x11"  # ctrl-p, ctrl-q
    if text == "":
        return b""
    out = bytearray()
    for key in text.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            ch = key[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch == "@":
                out.append(0)
            elif ch in "[\\]^_":
                out.append(0x1B + "[\\]^_".index(ch))
            else:
                raise InvalidArgument(f"Invalid detach keys ({text}) provided")
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise InvalidArgument(f"Invalid detach keys ({text}) provided")
    return bytes(out)


def services(daemon: Daemon) -> tuple[ContainerService, VolumeService]:
    vols = daemon.services.get("volumes")
    if vols is None:
        vols = VolumeService(os.path.join(daemon.config.data_root, "volumes"), daemon.events)
        daemon.services["volumes"] = vols
    svc = daemon.services.get("containers")
    if svc is None:
        svc = ContainerService(daemon)
        daemon.services["containers"] = svc
    return svc, vols


def register(router: Router, daemon: Daemon) -> None:
    svc, _vols = services(daemon)

    async def create(request: Request) -> Response:
        body = await request.json(required=True)
        if not isinstance(body, dict):
            raise InvalidArgument("container config must be a JSON object")
        host = body.pop("HostConfig", None)
        if host is None:
            host = {}
        if not isinstance(host, dict):
            kind = {list: "array", str: "string", bool: "bool"}.get(type(host), "number")
            raise InvalidArgument(
                f"json: cannot unmarshal {kind} into Go struct field "
                "ContainerConfigWrapper.HostConfig of type container.HostConfig"
            )
        networking = body.pop("NetworkingConfig", None)
        name = request.q("name") or ""
        try:
            c, warnings = await svc.create(name, body, host, networking)
        except (TypeError, ValueError, AttributeError, KeyError) as e:
            raise InvalidArgument(f"invalid container config: {e}")
        except SkiffError as e:
            log.info("create failed: %s", e)
            raise
        return json_response({"Id": c.id, "Warnings": warnings}, 201)

    async def list_(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        all_ = request.q_bool("all")
        limit = request.q_int("limit", -1) or -1
        out = []
        for c in views.list_containers(svc.containers.values(), filters, svc.get, all_, limit):
            entry = views.list_entry(c)
            if request.q_bool("size"):
                entry["SizeRw"] = rootfs_mod.upper_size(svc.rootfs_upper(c))
                entry["SizeRootFs"] = entry["SizeRw"]
            out.append(entry)
        return json_response(out)

    async def inspect(request: Request) -> Response:
        c = svc.get(request.params["id"])
        out = views.inspect(c)
        if request.q_bool("size"):
            out["SizeRw"] = rootfs_mod.upper_size(svc.rootfs_upper(c))
            out["SizeRootFs"] = out["SizeRw"]
        return json_response(out)

    async def start(request: Request) -> Response:
        c = svc.get(request.params["id"])
        if c.status == Status.RUNNING:
            return Response(304)
        await svc.start_container(c.id)
        return no_content()

    async def stop(request: Request) -> Response:
        t = request.q_int("t")
        if t is None:
            t = request.q_int("timeout")
        done = await svc.stop_container(request.params["id"], request.q("signal"), t)
        return no_content() if done else Response(304)

    async def kill(request: Request) -> Response:
        await svc.kill(request.params["id"], request.q("signal"))
        return no_content()

    async def restart(request: Request) -> Response:
        t = request.q_int("t")
        await svc.restart(request.params["id"], request.q("signal"), t)
        return no_content()

    async def pause(request: Request) -> Response:
        await svc.pause(request.params["id"])
        return no_content()

    async def unpause(request: Request) -> Response:
        await svc.unpause(request.params["id"])
        return no_content()

    async def wait(request: Request) -> Response:
        condition = request.q("condition") or "not-running"
        fut = svc.wait_future(request.params["id"], condition)

        async def chunks() -> AsyncIterator[bytes]:
            # the response head has gone out before this runs: `docker run` waits for it
            # before it starts the container
            code = await fut
            yield (json.dumps({"StatusCode": code, "Error": None}) + "\n").encode()

        if fut.done():
            return json_response({"StatusCode": fut.result(), "Error": None})
        return _EarlyStream(chunks())

    async def remove(request: Request) -> Response:
        await svc.remove(
            request.params["id"], force=request.q_bool("force"), volumes=request.q_bool("v")
        )
        return no_content()

    async def rename(request: Request) -> Response:
        await svc.rename(request.params["id"], request.q("name") or "")
        return no_content()

    async def update(request: Request) -> Response:
        body = await request.json(required=True)
        warnings = await svc.update(request.params["id"], body)
        return json_response({"Warnings": warnings})

    async def top(request: Request) -> Response:
        c = svc.get(request.params["id"])
        if not c.running:
            raise Conflict(f"container {c.id} is not running")
        pids = set(await svc.sup().pids(c.id))
        args = (request.q("ps_args") or "-ef").split()
        proc = await asyncio.create_subprocess_exec(
            "ps", *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise SkiffError(f"ps: {err.decode().strip()}")
        lines = out.decode().splitlines()
        if not lines:
            return json_response({"Titles": [], "Processes": []})
        titles = lines[0].split()
        try:
            pid_col = titles.index("PID")
        except ValueError:
            raise InvalidArgument("Couldn't find PID field in ps output")
        procs = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) <= pid_col:
                continue
            try:
                if int(fields[pid_col]) in pids:
                    procs.append(fields)
            except ValueError:
                continue
        return json_response({"Titles": titles, "Processes": procs})

    async def stats(request: Request) -> Response:
        c = svc.get(request.params["id"])
        stream = request.q_bool("stream", True)
        one_shot = request.q_bool("one-shot")

        def take() -> dict[str, Any]:
            if not c.running:
                s = stats_mod.empty()
            else:
                s = stats_mod.sample(svc.cgroup_path(c), 0)
            s["name"] = c.name
            s["id"] = c.id
            s["networks"] = {}
            return s

        if not stream:
            cur = take()
            if one_shot:
                cur["precpu_stats"] = {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
                cur["preread"] = "0001-01-01T00:00:00Z"
                return json_response(cur)
            prev = cur
            await asyncio.sleep(0.5)
            cur = take()
            cur["precpu_stats"] = prev["cpu_stats"]
            cur["preread"] = prev["read"]
            return json_response(cur)

        async def chunks() -> AsyncIterator[bytes]:
            prev: dict[str, Any] | None = None
            while True:
                cur = take()
                cur["precpu_stats"] = (
                    prev["cpu_stats"]
                    if prev
                    else {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}
                )
                cur["preread"] = prev["read"] if prev else "0001-01-01T00:00:00Z"
                yield (json.dumps(cur) + "\n").encode()
                prev = cur
                if not c.running and c.id not in svc.containers:
                    return
                await asyncio.sleep(1.0)

        return StreamResponse(chunks())

    async def logs(request: Request) -> Response:
        c = svc.get(request.params["id"])
        if (c.host.get("LogConfig") or {}).get("Type") == "none":
            raise InvalidArgument("configured logging driver does not support reading")
        want_out = request.q_bool("stdout")
        want_err = request.q_bool("stderr")
        if not want_out and not want_err:
            raise InvalidArgument("Bad parameters: you must choose at least one stream")
        follow = request.q_bool("follow")
        timestamps = request.q_bool("timestamps")
        since = _time_param(request.q("since"))
        until = _time_param(request.q("until"))
        tail_text = request.q("tail") or "all"
        tail: int | None = None
        if tail_text != "all":
            try:
                tail = int(tail_text)
            except ValueError:
                tail = None
        tty = bool(c.config.get("Tty"))
        max_file = int(((c.host.get("LogConfig") or {}).get("Config") or {}).get("max-file") or 1)

        def still_running() -> bool:
            return c.id in svc.logs and c.id in svc.containers

        async def chunks() -> AsyncIterator[bytes]:
            async for entry in follow_entries(
                c.log_path, max_file, tail, still_running if follow else None
            ):
                stream = entry.get("stream", "stdout")
                if (stream == "stdout" and not want_out) or (stream == "stderr" and not want_err):
                    continue
                t = entry.get("time", "")
                if since or until:
                    try:
                        ts = parse_time(t)
                    except ValueError:
                        ts = 0.0
                    if since and ts < since:
                        continue
                    if until and ts > until:
                        if follow:
                            return
                        continue
                data = entry.get("log", "").encode()
                if timestamps:
                    data = t.encode() + b" " + data
                yield data if tty else frame(stream, data)

        ctype = (
            "application/vnd.docker.raw-stream"
            if tty
            else "application/vnd.docker.multiplexed-stream"
        )
        return _EarlyStream(chunks(), content_type=ctype)

    async def attach(request: Request) -> Response:
        c = svc.get(request.params["id"])
        # a stopped container is attached to as a created one: `docker start -a` attaches
        # first, then starts (the docker CLI's `attach` refuses stopped ones on its side)
        if c.status in (Status.DEAD, Status.REMOVING) and not request.q_bool("logs"):
            raise Conflict("You cannot attach to a stopped container, start it first")
        if c.status == Status.PAUSED:
            raise Conflict("You cannot attach to a paused container, unpause it first")
        detach = parse_detach_keys(request.q("detachKeys"))
        early: AttachSink | None = None
        if request.q_bool("stream"):
            # `docker run` attaches, then starts once it has the 101: as dockerd, the
            # attach (its event and its share of the output) is in place before the
            # response goes out, so the start can neither come first nor lose output
            early = AttachSink()
            if not request.q_bool("logs"):
                early.register(svc, c)
            svc.events.emit("container", "attach", c.id, svc.attrs(c))
        return HijackResponse(
            lambda reader, writer: attach_session(svc, c, request, reader, writer, detach, early),
            wants_upgrade(request),
            "application/vnd.docker.raw-stream"
            if c.config.get("Tty")
            else "application/vnd.docker.multiplexed-stream",
        )

    async def resize(request: Request) -> Response:
        c = svc.get(request.params["id"])
        h = request.q_int("h", 0) or 0
        w = request.q_int("w", 0) or 0
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        await svc.sup().resize(c.id, "", w, h)
        svc.events.emit(
            "container", "resize", c.id, {**svc.attrs(c), "height": str(h), "width": str(w)}
        )
        return Response(200, b"", None, "text/plain")

    async def export(request: Request) -> Response:
        c = svc.get(request.params["id"])
        svc.events.emit("container", "export", c.id, svc.attrs(c))
        return await _tar_out(
            svc, c, lambda root, out: archive_mod.export_tar(root, out), "application/x-tar"
        )

    async def archive_head(request: Request) -> Response:
        c = svc.get(request.params["id"])
        path = request.q("path") or ""
        if not path:
            raise InvalidArgument("path is required")
        async with _root_of(svc, c, False) as root:
            header = await asyncio.to_thread(archive_mod.stat_path, root, path)
        return Response(200, b"", {"X-Docker-Container-Path-Stat": header}, "application/x-tar")

    async def archive_get(request: Request) -> Response:
        if request.method == "HEAD":
            return await archive_head(request)
        c = svc.get(request.params["id"])
        path = request.q("path") or ""
        if not path:
            raise InvalidArgument("path is required")
        async with _root_of(svc, c, False) as root:
            header = await asyncio.to_thread(archive_mod.stat_path, root, path)
        resp = await _tar_out(
            svc, c, lambda root, out: archive_mod.write_tar(root, path, out), "application/x-tar"
        )
        resp.headers["X-Docker-Container-Path-Stat"] = header
        return resp

    async def archive_put(request: Request) -> Response:
        c = svc.get(request.params["id"])
        path = request.q("path") or ""
        if not path:
            raise InvalidArgument("path is required")
        if c.host.get("ReadonlyRootfs"):
            raise Conflict("container rootfs is marked read-only")
        with tempfile.TemporaryFile() as spool:
            async for chunk in request.body:
                spool.write(chunk)
            spool.seek(0)
            async with _root_of(svc, c, True) as root:
                await asyncio.to_thread(archive_mod.extract_tar, root, path, spool)
        svc.events.emit("container", "extract-to-dir", c.id, svc.attrs(c))
        return Response(200)

    async def changes(request: Request) -> Response:
        c = svc.get(request.params["id"])
        out = await asyncio.to_thread(rootfs_mod.changes, svc.rootfs_upper(c))
        return json_response(out or None)

    async def prune(request: Request) -> Response:
        filters = parse_filters(request.q_json("filters"))
        until = None
        if "until" in filters:
            until = _time_param(next(iter(filters.pop("until"))))
        label_not = filters.pop("label!", set())
        deleted, space = [], 0
        for c in list(svc.containers.values()):
            if c.running or c.status == Status.RESTARTING:
                continue
            if until and views._ts(c.data.get("Created", "")) > until:
                continue
            labels = c.config.get("Labels") or {}
            if any(_label_hit(labels, w) for w in label_not):
                continue
            if not views.matches(c, {k: v for k, v in filters.items() if k == "label"}, svc.get):
                continue
            space += rootfs_mod.upper_size(svc.rootfs_upper(c))
            await svc.remove(c.id)
            deleted.append(c.id)
        svc.events.emit("container", "prune", "", {"reclaimed": str(space)})
        return json_response({"ContainersDeleted": deleted or None, "SpaceReclaimed": space})

    def ready(handler: Any) -> Any:
        # nothing about containers is answered before they have all been found again
        async def gated(request: Request) -> Response:
            if not svc.restored.is_set():
                await asyncio.wait_for(svc.restored.wait(), 120)
            return await handler(request)  # type: ignore[no-any-return]

        return gated

    class _Gate:
        def add(self, method: str, path: str, handler: Any) -> None:
            router.add(method, path, ready(handler))

    r = _Gate()
    r.add("POST", "/containers/create", create)
    r.add("GET", "/containers/json", list_)
    r.add("POST", "/containers/prune", prune)
    r.add("GET", "/containers/{id}/json", inspect)
    r.add("POST", "/containers/{id}/start", start)
    r.add("POST", "/containers/{id}/stop", stop)
    r.add("POST", "/containers/{id}/kill", kill)
    r.add("POST", "/containers/{id}/restart", restart)
    r.add("POST", "/containers/{id}/pause", pause)
    r.add("POST", "/containers/{id}/unpause", unpause)
    r.add("POST", "/containers/{id}/wait", wait)
    r.add("DELETE", "/containers/{id}", remove)
    r.add("POST", "/containers/{id}/rename", rename)
    r.add("POST", "/containers/{id}/update", update)
    r.add("GET", "/containers/{id}/top", top)
    r.add("GET", "/containers/{id}/stats", stats)
    r.add("GET", "/containers/{id}/logs", logs)
    r.add("POST", "/containers/{id}/attach", attach)
    r.add("POST", "/containers/{id}/resize", resize)
    r.add("GET", "/containers/{id}/export", export)
    r.add("GET", "/containers/{id}/archive", archive_get)
    r.add("HEAD", "/containers/{id}/archive", archive_head)
    r.add("PUT", "/containers/{id}/archive", archive_put)
    r.add("GET", "/containers/{id}/changes", changes)


def _label_hit(labels: dict[str, str], wanted: str) -> bool:
    k, sep, v = wanted.partition("=")
    return k in labels and (not sep or labels[k] == v)


def _time_param(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise InvalidArgument(f"invalid time value: {text!r}")


class _EarlyStream(StreamResponse):
    """A chunked response whose head goes out before the first chunk is ready."""

    def __init__(self, chunks: AsyncIterator[bytes], content_type: str = "application/json"):
        super().__init__(chunks, 200, content_type)


class _RootCtx:
    def __init__(self, svc: ContainerService, c: Container, writable: bool):
        self.svc, self.c, self.writable = svc, c, writable
        self._cm: Any = None

    async def __aenter__(self) -> str:
        live = self.svc.process_root(self.c)
        if live is not None:
            return live
        mounts = await self.svc.sup().snapshot_mounts(self.c.id)
        self._cm = rootfs_mod.mounted(mounts, os.path.join(self.c.dir, "mnt"), self.writable)
        return await asyncio.to_thread(self._cm.__enter__)

    async def __aexit__(self, *exc: object) -> None:
        if self._cm is not None:
            await asyncio.to_thread(self._cm.__exit__, None, None, None)


def _root_of(svc: ContainerService, c: Container, writable: bool) -> _RootCtx:
    return _RootCtx(svc, c, writable)


async def _tar_out(svc: ContainerService, c: Container, produce: Any, ctype: str) -> Response:
    """Stream a tar written by a worker thread through a pipe."""
    loop = asyncio.get_running_loop()
    r, w = os.pipe()
    ctx = _root_of(svc, c, False)
    root = await ctx.__aenter__()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with os.fdopen(w, "wb", buffering=1 << 16) as out:
                produce(root, out)
        except BaseException as e:  # reported to the log; the stream just ends
            errors.append(e)

    # fail before the head when the path is missing
    worker = loop.run_in_executor(None, work)

    async def chunks() -> AsyncIterator[bytes]:
        reader = os.fdopen(r, "rb", buffering=0)
        try:
            while True:
                data = await loop.run_in_executor(None, reader.read, 1 << 16)
                if not data:
                    break
                yield data
            await worker
        finally:
            reader.close()
            with contextlib.suppress(Exception):
                await worker
            await ctx.__aexit__()

    return StreamResponse(chunks(), 200, ctype)


async def attach_session(
    svc: ContainerService,
    c: Container,
    request: Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    detach_keys: bytes,
    early: AttachSink | None = None,
) -> None:
    tty = bool(c.config.get("Tty"))
    want = {
        "stdout": request.q_bool("stdout"),
        "stderr": request.q_bool("stderr"),
    }
    want_stdin = request.q_bool("stdin") and bool(c.config.get("OpenStdin"))
    stream = request.q_bool("stream")
    att = early or AttachSink()
    queue = att.queue
    sink = att.sink

    if request.q_bool("logs"):
        max_file = int(((c.host.get("LogConfig") or {}).get("Config") or {}).get("max-file") or 1)
        async for entry in follow_entries(c.log_path, max_file, None, None):
            s = entry.get("stream", "stdout")
            if want.get(s):
                data = entry.get("log", "").encode()
                writer.write(data if tty else frame(s, data))
        await writer.drain()
    if not stream:
        writer.close()
        return
    if not att.registered:
        att.register(svc, c)
    attached = svc.attachers.setdefault(c.id, [])
    detached = asyncio.Event()
    ended = asyncio.Event()

    async def pump_in() -> None:
        matched = 0
        try:
            while True:
                data = await reader.read(32768)
                if not data:
                    break
                if detach_keys:
                    out = bytearray()
                    for b in data:
                        if b == detach_keys[matched]:
                            matched += 1
                            if matched == len(detach_keys):
                                detached.set()
                                return
                            continue
                        if matched:
                            out += detach_keys[:matched]
                            matched = 0
                        out.append(b)
                    data = bytes(out)
                if not data:
                    continue
                target = await _stdio_when_started(svc, c)
                if target is None:
                    return
                await target.write_stdin(data)
        except (ConnectionError, OSError):
            return
        # the client closed its side. As dockerd: without a TTY and with StdinOnce the
        # container's stdin ends too and the output goes on; otherwise the session
        # ends and the container's stdin stays open for the next attach (the docker CLI
        # closes its side when it sees the detach keys itself, so a TTY session ends so).
        # The shim holds a writer of its own on the FIFO (so that a skiffd restart is no
        # EOF): closing ours, then CloseIO, is the EOF, after what is buffered
        if c.config.get("StdinOnce") and not tty:
            target = await _stdio_when_started(svc, c)  # an EOF before the start counts too
            if target is not None:
                target.close_stdin()
                with contextlib.suppress(SkiffError):
                    await svc.sup().close_stdin(c.id)  # gone meanwhile: nothing to end
        else:
            ended.set()

    async def pump_out() -> None:
        while True:
            name, data = await queue.get()
            if not name:
                return
            if not want.get(name) and not (tty and name == "stdout"):
                continue
            writer.write(data if tty else frame(name, data))
            await writer.drain()

    in_task = asyncio.get_running_loop().create_task(pump_in()) if want_stdin else None
    out_task = asyncio.get_running_loop().create_task(pump_out())
    detach_task = asyncio.get_running_loop().create_task(detached.wait())
    end_task = asyncio.get_running_loop().create_task(ended.wait())
    try:
        await asyncio.wait({out_task, detach_task, end_task}, return_when=asyncio.FIRST_COMPLETED)
        if out_task.done() and not out_task.cancelled():
            out_task.exception()  # a client gone away: nothing to report
        if detached.is_set():
            svc.events.emit("container", "detach", c.id, svc.attrs(c))
    except (ConnectionError, OSError):
        pass
    finally:
        for t in (in_task, out_task, detach_task, end_task):
            if t is not None and not t.done():
                t.cancel()
        with contextlib.suppress(ValueError):
            attached.remove(sink)
        io = svc.stdio.get(c.id)
        if io is not None:
            with contextlib.suppress(ValueError):
                io.sinks.remove(sink)
        with contextlib.suppress(Exception):
            await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()


class AttachSink:
    """One attached client's share of a container's output, queued for its session."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.registered = False

    def sink(self, name: str, data: bytes) -> None:
        self.queue.put_nowait((name, data))

    def register(self, svc: ContainerService, c: Container) -> None:
        """Receive the output from now on (and from each later start of the container)."""
        svc.attachers.setdefault(c.id, []).append(self.sink)
        io = svc.stdio.get(c.id)
        if io is not None and c.running:
            io.sinks.append(self.sink)
        self.registered = True


async def _stdio_when_started(svc: ContainerService, c: Container) -> Any:
    for _ in range(600):
        io = svc.stdio.get(c.id)
        if io is not None:
            return io
        if c.id not in svc.containers:
            return None
        await asyncio.sleep(0.05)
    return None


_ = (time, rfc3339)
