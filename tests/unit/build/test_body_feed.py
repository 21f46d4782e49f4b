"""The request body handed to the build thread (BodyFeed) and contexts
unpacked from a stream that cannot seek, as it arrives."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
import threading
from pathlib import Path

from skiff.engine.build.context import Context
from skiff.engine.build.service import BodyFeed


class Dribble:
    """A non-seekable stream that hands out at most `n` bytes per read."""

    def __init__(self, data: bytes, n: int) -> None:
        self.data, self.n, self.pos = data, n, 0

    def read(self, size: int = -1) -> bytes:
        want = self.n if size < 0 else min(size, self.n)
        out = self.data[self.pos : self.pos + want]
        self.pos += len(out)
        return out


def tar_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = len(data), 0o644
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_context_from_a_stream_in_small_reads(tmp_path: Path) -> None:
    body = tar_of({"Dockerfile": b"FROM scratch\n", "big": os.urandom(100_000)})
    with Context.from_tar(Dribble(body, 7), str(tmp_path)) as ctx:  # type: ignore[arg-type]
        assert ctx.read_dockerfile("Dockerfile") == b"FROM scratch\n"
        assert os.path.getsize(ctx.resolve("big")) == 100_000


def test_bare_dockerfile_from_a_stream(tmp_path: Path) -> None:
    text = b"FROM busybox\n" + b"RUN true\n" * 100
    with Context.from_tar(Dribble(text, 100), str(tmp_path)) as ctx:  # type: ignore[arg-type]
        assert ctx.read_dockerfile("Dockerfile") == text


def test_feed_hands_every_byte_in_order_across_threads() -> None:
    chunks = [os.urandom(n) for n in (1, 5000, 70000, 3, 65536)]
    got = bytearray()

    def reader(feed: BodyFeed) -> None:
        while data := feed.read(4096):
            got.extend(data)

    async def main() -> None:
        feed = BodyFeed(limit=10_000)  # smaller than the body: put must wait for the reader
        thread = threading.Thread(target=reader, args=(feed,))
        thread.start()
        for chunk in chunks:
            assert await feed.put(chunk)
        feed.end()
        await asyncio.to_thread(thread.join, 10)

    asyncio.run(main())
    assert bytes(got) == b"".join(chunks)


def test_feed_put_returns_false_once_the_reader_closed() -> None:
    async def main() -> None:
        feed = BodyFeed(limit=10)
        assert await feed.put(b"x" * 20)  # accepted: the buffer was empty
        threading.Timer(0.05, feed.close).start()
        assert not await feed.put(b"more")  # waits for room, then sees the close
        assert feed.read() == b""

    asyncio.run(main())
