"""daemon.services["build"]: runs builds in a worker thread over its own
supervisor connection, and owns the build cache (prune, /system/df).
The HTTP side is skiff.engine.api.build.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

from skiff.containerd.client import images as cimages
from skiff.containerd.client.core import Client
from skiff.engine.build.builder import GC_ROOT, Builder, BuildOptions, Output
from skiff.engine.build.cache import BuildCache
from skiff.engine.build.context import Context
from skiff.errors import NotFound, SkiffError, Unavailable
from skiff.oci.platform import Platform

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

    def builder(self, loop: asyncio.AbstractEventLoop | None = None) -> Builder:
        client = self.client()
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

        return Builder(
            client,
            self.cache,
            runtime=self.runtime,
            workdir=os.path.join(self.root, "tmp"),
            pull_image=pull,
        )

    async def spool(self, body: AsyncIterator[bytes]) -> str:
        os.makedirs(os.path.join(self.root, "tmp"), exist_ok=True)
        fd, path = tempfile.mkstemp(prefix="context-", dir=os.path.join(self.root, "tmp"))
        with os.fdopen(fd, "wb") as f:
            async for chunk in body:
                await asyncio.to_thread(f.write, chunk)
        return path

    async def build(self, body_path: str, opts: BuildOptions) -> AsyncIterator[dict[str, Any]]:
        """Messages of the build as they come (stream/aux/error)."""
        messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                with open(body_path, "rb") as body:
                    ctx = Context.from_tar(body, os.path.join(self.root, "tmp"))
                with ctx:
                    self.builder(loop).build(ctx, opts, messages.put)
            except SkiffError as e:
                messages.put({"errorDetail": {"message": str(e)}, "error": str(e)})
            except Exception as e:  # a fault: still end the stream with Docker's error shape
                messages.put(
                    {"errorDetail": {"message": f"{type(e).__name__}: {e}"}, "error": str(e)}
                )
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(body_path)
                messages.put(None)

        thread = threading.Thread(target=run, name="skiff-build", daemon=True)
        thread.start()
        while True:
            msg = await asyncio.to_thread(messages.get)
            if msg is None:
                break
            yield msg

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
