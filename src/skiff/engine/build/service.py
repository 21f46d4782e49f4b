"""daemon.services["build"]: runs builds in a worker thread over its own
supervisor connection, and owns the build cache (prune, /system/df).
The HTTP side is skiff.engine.api.build.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from skiff.containerd.client import images as cimages
from skiff.containerd.client.core import Client
from skiff.engine.build.builder import GC_ROOT, Builder, BuildOptions, Output
from skiff.engine.build.cache import BuildCache
from skiff.engine.build.context import Context
from skiff.errors import NotFound, SkiffError, Unavailable
from skiff.oci.platform import Platform

log = logging.getLogger("skiffd.build")

# the runtime the engine's containers use (our shim); tests may override it
DEFAULT_RUNTIME = "io.containerd.skiff.v1"


class BuildService:
    def __init__(self, daemon: Any, *, runtime: str | None = None) -> None:
        self.daemon = daemon
        self.root = os.path.join(daemon.config.data_root, "build")
        self.cache = BuildCache(self.root)
        self.runtime = runtime or os.environ.get("SKIFF_BUILD_RUNTIME", DEFAULT_RUNTIME)
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._builder: tuple[Client, asyncio.AbstractEventLoop | None, Builder] | None = None

    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                address = self.daemon.supervisor.address or self.daemon.config.containerd
                if not address:
                    raise Unavailable("the supervisor is not connected yet")
                self._client = Client(address, self.daemon.config.containerd_namespace)
            return self._client

    async def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
            self._builder = None

    def builder(self, loop: asyncio.AbstractEventLoop | None = None) -> Builder:
        """The builder (one, kept: it remembers resolved images between builds)."""
        client = self.client()
        kept = self._builder
        if kept is not None and kept[0] is client and kept[1] is loop:
            return kept[2]
        images = self.daemon.services.get("images")

        def pull(ref: str, platform: Platform, out: Output) -> None:
            if images is None or loop is None:
                cimages.pull(client, ref, platform=platform)
                return
            # through the image service, so the client sees dockerd's pull progress
            future = asyncio.run_coroutine_threadsafe(
                _pull_with_progress(images, ref, str(platform), out), loop
            )
            future.result()

        builder = Builder(
            client,
            self.cache,
            runtime=self.runtime,
            workdir=os.path.join(self.root, "tmp"),
            pull_image=pull,
        )
        self._builder = (client, loop, builder)
        return builder

    async def build(
        self, body: AsyncIterator[bytes], opts: BuildOptions
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Start a build whose context is `body` (read here, while a worker
        thread unpacks it as it arrives); returns its messages (stream/aux/error),
        in batches of what was ready together."""
        loop = asyncio.get_running_loop()
        messages: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        feed = BodyFeed()
        tmp = os.path.join(self.root, "tmp")

        def emit(msg: dict[str, Any] | None) -> None:
            loop.call_soon_threadsafe(messages.put_nowait, msg)

        t0 = time.monotonic()

        def run() -> None:
            try:
                ctx = Context.from_tar(feed, tmp)  # type: ignore[arg-type]
                feed.close()
                t1 = time.monotonic()
                with ctx:
                    self.builder(loop).build(ctx, opts, emit)
                log.debug(
                    "build: context in %.1f ms, steps in %.1f ms",
                    (t1 - t0) * 1000,
                    (time.monotonic() - t1) * 1000,
                )
            except SkiffError as e:
                emit({"errorDetail": {"message": str(e)}, "error": str(e)})
            except Exception as e:  # a fault: still end the stream with Docker's error shape
                emit({"errorDetail": {"message": f"{type(e).__name__}: {e}"}, "error": str(e)})
            finally:
                feed.close()
                emit(None)

        os.makedirs(tmp, exist_ok=True)
        threading.Thread(target=run, name="skiff-build", daemon=True).start()
        try:
            async for chunk in body:
                if not await feed.put(chunk):
                    break  # the worker stopped reading (a bad context): its error follows
        finally:
            feed.end()

        async def stream() -> AsyncIterator[list[dict[str, Any]]]:
            # what has queued up goes out together: one chunk and one write, not one per line
            while True:
                batch = [await messages.get()]
                while not messages.empty() and batch[-1] is not None:
                    batch.append(messages.get_nowait())
                done = batch[-1] is None
                ready = [m for m in batch if m is not None]
                if ready:
                    yield ready
                if done:
                    return

        return stream()

    async def prune(self, all_: bool = True, keep_storage: int = 0) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            deleted: list[str] = []
            reclaimed = 0
            entries = sorted(self.cache.entries(), key=lambda e: e.last_used)
            kept = sum(e.size for e in entries)
            for e in entries:
                if keep_storage and kept <= keep_storage:
                    break
                try:
                    self.client().update_content_labels(e.manifest, {GC_ROOT: ""})
                except NotFound:
                    pass
                self.cache.remove(e.key)
                deleted.append(e.key[:25])
                reclaimed += e.size
                kept -= e.size
            shutil.rmtree(os.path.join(self.root, "tmp"), ignore_errors=True)
            return {"CachesDeleted": deleted, "SpaceReclaimed": reclaimed}

        return await asyncio.to_thread(run)

    async def disk_usage(self) -> dict[str, Any]:
        return {"BuildCache": await asyncio.to_thread(self.cache.disk_usage)}


class BodyFeed:
    """The request body handed from the event loop to the build thread as a
    file (`read(n)`), at most `limit` bytes buffered."""

    def __init__(self, limit: int = 8 << 20) -> None:
        self._cond = threading.Condition()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._limit = limit
        self._eof = False
        self._closed = False

    async def put(self, chunk: bytes) -> bool:
        """Queue `chunk`; False once the reader has closed."""
        while True:
            with self._cond:
                if self._closed:
                    return False
                if self._size < self._limit:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    self._cond.notify_all()
                    return True
            await asyncio.sleep(0.002)

    def end(self) -> None:
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._chunks.clear()
            self._size = 0
            self._cond.notify_all()

    def read(self, n: int = -1) -> bytes:
        with self._cond:
            while not self._chunks and not self._eof and not self._closed:
                self._cond.wait()
            if not self._chunks:
                return b""
            data = self._chunks.popleft()
            if 0 <= n < len(data):
                self._chunks.appendleft(data[n:])
                data = data[:n]
            self._size -= len(data)
            return data


async def _pull_with_progress(images: Any, ref: str, platform: str, out: Output) -> None:
    """Pull `ref` with daemon.services["images"], its progress lines handed to `out`."""
    plan = await images.prepare_pull(ref, "", None, platform)
    async for chunk in images.pull_stream(plan):
        for line in chunk.splitlines():
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("error"):
                raise Unavailable(str(msg["error"]))
            out(msg)


def split_values(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.split(",") if x)
    return out
