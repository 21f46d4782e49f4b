"""Moving bytes between the user's terminal and a hijacked attach/exec stream.

Part of the CLI (DESIGN.md: skiff CLI -> Engine API hijacked connections).
One select loop copies stdin to the daemon (watching for the detach keys) and
the daemon's output to stdout/stderr (demultiplexed unless a tty); in a
terminal the tty is put in raw mode and restored on every way out, and window
size changes (SIGWINCH) are forwarded as resize calls.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

from skiff.client import Hijacked
from skiff.client.stdcopy import Demuxer

DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


class Detached(Exception):
    """The user typed the detach sequence."""


def parse_detach_keys(spec: str) -> bytes:
    """docker's format: comma-separated "ctrl-<x>" or single characters."""
    out = bytearray()
    for key in spec.split(","):
        key = key.strip()
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            code = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}.get(c)
            out.append(code if code is not None else (ord(c.lower()) - ord("a") + 1))
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(f"invalid detach keys ({key}) provided")
    return bytes(out)


class EscapeWatcher:
    """Holds back bytes that may begin the detach sequence, as docker's EscapeProxy."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.matched = 0

    def feed(self, data: bytes) -> bytes:
        if not self.keys:
            return data
        out = bytearray()
        for b in data:
            if b == self.keys[self.matched]:
                self.matched += 1
                if self.matched == len(self.keys):
                    raise Detached()
                continue
            if self.matched:
                out += self.keys[: self.matched]
                self.matched = 0
                if b == self.keys[0]:
                    self.matched = 1
                    continue
            out.append(b)
        return bytes(out)


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool) -> Iterator[None]:
    """Raw mode on fd for the duration; restored on exceptions and signals too."""
    if not enabled or not os.isatty(fd):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    previous: dict[signal.Signals, Any] = {}

    def restore_and_exit(signum: int, frame: Any) -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        previous[sig] = signal.signal(sig, restore_and_exit)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def terminal_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


@contextlib.contextmanager
def forward_resizes(fd: int, resize: Callable[[int, int], None], enabled: bool) -> Iterator[None]:
    """Call resize(h, w) now and on every SIGWINCH while the context lasts."""
    if not enabled or not os.isatty(fd):
        yield
        return

    def send(*_: Any) -> None:
        size = terminal_size(fd)
        if size and size[0] and size[1]:
            with contextlib.suppress(Exception):
                resize(*size)

    previous = signal.signal(signal.SIGWINCH, send)
    try:
        send()
        yield
    finally:
        signal.signal(signal.SIGWINCH, previous)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def pump(conn: Hijacked, *, stdin: bool, tty: bool, detach_keys: str | None = None,
         stdout_fd: int | None = None, stderr_fd: int | None = None) -> None:  # fmt: skip
    """Copy until the daemon closes the stream; raise Detached on the detach keys."""
    sys.stdout.flush()
    out_fd = sys.stdout.fileno() if stdout_fd is None else stdout_fd
    err_fd = sys.stderr.fileno() if stderr_fd is None else stderr_fd
    in_fd = sys.stdin.fileno() if stdin else -1
    watcher = EscapeWatcher(parse_detach_keys(detach_keys or DEFAULT_DETACH_KEYS) if tty else b"")
    if stdin and detach_keys is not None and not tty:
        watcher = EscapeWatcher(parse_detach_keys(detach_keys))
    # API < 1.42 labels both kinds raw-stream: only the tty setting tells them apart
    demux = None if tty else Demuxer()
    sock = conn.sock

    def deliver(data: bytes) -> None:
        if demux is None:
            write_all(out_fd, data)
            return
        for stream, payload in demux.feed(data):
            write_all(err_fd if stream == 2 else out_fd, payload)

    watch_stdin = stdin
    while True:
        if conn.pending or ssl_pending(sock):
            ready: list[Any] = [sock]
        else:
            rlist: list[Any] = [sock] + ([in_fd] if watch_stdin else [])
            try:
                ready, _, _ = select.select(rlist, [], [])
            except InterruptedError:
                continue
        if sock in ready:
            data = conn.recv()
            if not data:
                return
            deliver(data)
        if watch_stdin and in_fd in ready:
            try:
                data = os.read(in_fd, 32768)
            except InterruptedError:
                continue
            if not data:
                watch_stdin = False
                conn.close_write()
                continue
            data = watcher.feed(data)
            if data:
                conn.send(data)


def ssl_pending(sock: Any) -> bool:
    pending = getattr(sock, "pending", None)
    return bool(pending and pending())
