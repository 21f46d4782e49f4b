"""A process's stdio between the shim and skiffd: named FIFOs, their copiers
and the attach broadcast.

skiffd makes the FIFOs under `<exec-root>/containerd/<id>/` and keeps the
reading ends; the shim opens the writing ends. Output is copied to the log
(json-file) and to every attached client; stdin comes from one attached
client at a time. The FIFOs outlive skiffd, so a restarted skiffd reopens
them and goes on copying where the old one stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import Callable

Sink = Callable[[str, bytes], None]


def ensure_fifo(path: str) -> None:
    try:
        if stat.S_ISFIFO(os.stat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


class ProcessStdio:
    """The FIFOs of one process (the init process or an exec)."""

    def __init__(self, directory: str, name: str, stdin: bool, tty: bool):
        self.directory = directory
        self.tty = tty
        os.makedirs(directory, 0o700, exist_ok=True)
        self.stdin_path = os.path.join(directory, f"{name}-stdin") if stdin else ""
        self.stdout_path = os.path.join(directory, f"{name}-stdout")
        self.stderr_path = "" if tty else os.path.join(directory, f"{name}-stderr")
        self.sinks: list[Sink] = []
        self.done = asyncio.Event()
        self._readers: dict[str, int] = {}
        self._stdin_fd = -1
        self._open_streams = 0
        self._stdin_closed = False

    def open(self) -> None:
        """Make the FIFOs and open our ends (never blocks)."""
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path:
                ensure_fifo(path)
        # O_RDWR for stdin: the open never blocks and a write never hits a
        # FIFO without a reader; closing it is the container's EOF.
        if self.stdin_path:
            self._stdin_fd = os.open(self.stdin_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        for stream, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            if path:
                self._readers[stream] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)

    def start_copying(self) -> None:
        """Start reading; call once the shim holds the writing ends (EOF means the end)."""
        loop = asyncio.get_running_loop()
        self._open_streams = len(self._readers)
        if not self._readers:
            self.done.set()
        for stream, fd in self._readers.items():
            loop.add_reader(fd, self._readable, stream, fd)

    def _readable(self, stream: str, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            for sink in list(self.sinks):
                try:
                    sink(stream, data)
                except Exception:  # one broken consumer must not stop the others
                    with contextlib.suppress(ValueError):
                        self.sinks.remove(sink)
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        os.close(fd)
        self._readers.pop(stream, None)
        self._open_streams -= 1
        if self._open_streams <= 0:
            for sink in list(self.sinks):
                with contextlib.suppress(Exception):
                    sink("", b"")  # end of output
            self.done.set()

    async def write_stdin(self, data: bytes) -> None:
        view = memoryview(data)
        while view and self._stdin_fd >= 0:
            try:
                n = os.write(self._stdin_fd, view)
                view = view[n:]
            except BlockingIOError:
                await asyncio.sleep(0.005)
            except OSError:
                return

    @property
    def has_stdin(self) -> bool:
        return self._stdin_fd >= 0

    def close_stdin(self) -> None:
        if self._stdin_fd >= 0:
            os.close(self._stdin_fd)
            self._stdin_fd = -1
        self._stdin_closed = True

    def close(self) -> None:
        self.close_stdin()
        loop = asyncio.get_event_loop()
        for fd in self._readers.values():
            with contextlib.suppress(Exception):
                loop.remove_reader(fd)
            with contextlib.suppress(OSError):
                os.close(fd)
        self._readers.clear()
        self.done.set()

    def remove_files(self) -> None:
        for path in (self.stdin_path, self.stdout_path, self.stderr_path):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
