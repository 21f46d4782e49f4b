"""Helpers for the builder tests: contexts as tars, a builder on a
containerd, reading a built image back."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from skiff.engine.build.builder import Builder, BuildOptions, BuildResult
from skiff.engine.build.cache import BuildCache
from skiff.engine.build.context import Context


def context_tar(files: dict[str, str | bytes | tuple[str, int]]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            mode = 0o644
            if isinstance(data, tuple):
                data, mode = data
            raw = data.encode() if isinstance(data, str) else data
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(raw), mode, 1_600_000_000
            tar.addfile(ti, io.BytesIO(raw))
    buf.seek(0)
    return buf


class Harness:
    def __init__(self, client: Any, root: Path, runtime: str = "io.containerd.skiff.v1") -> None:
        self.client = client
        self.root = root
        self.cache = BuildCache(str(root / "build"))
        self.builder = Builder(client, self.cache, runtime=runtime, workdir=str(root / "work"))
        self.messages: list[dict[str, Any]] = []

    def build(self, files: dict[str, Any], **kw: Any) -> BuildResult:
        self.messages = []
        with Context.from_tar(context_tar(files), str(self.root / "ctx")) as ctx:
            return self.builder.build(ctx, BuildOptions(**kw), self.messages.append)

    @property
    def stream(self) -> str:
        return "".join(m.get("stream", "") for m in self.messages)

    def config(self, image_id: str) -> dict[str, Any]:
        data = b"".join(self.client.read_content(image_id))
        result: dict[str, Any] = json.loads(data)
        return result
