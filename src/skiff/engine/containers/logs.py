"""The json-file log driver: what `docker logs` reads.

One JSON object per line, `{"log": ..., "stream": "stdout", "time": RFC3339Nano}`,
in `<data-root>/containers/<id>/<id>-json.log`, rotated by max-size into
`.1`, `.2`, ... up to max-file. Reading follows the file across rotations.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from skiff.engine.containers.spec import parse_size


def rfc3339(ts: float) -> str:
    """RFC 3339 with nanoseconds, as Go prints time.Time in JSON."""
    if ts <= 0:
        return "0001-01-01T00:00:00Z"
    sec = int(ts)
    nanos = round((ts - sec) * 1e9)
    if nanos >= 1_000_000_000:
        sec, nanos = sec + 1, nanos - 1_000_000_000
    base = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{nanos:09d}".rstrip("0").rstrip(".")
    return f"{base}{frac}Z"


def parse_time(text: str) -> float:
    """RFC 3339 (any precision) or a Unix timestamp with fraction, as the CLI sends."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    main, _, rest = text.partition(".")
    frac = ""
    tz = "Z"
    if rest:
        digits = ""
        for i, ch in enumerate(rest):
            if not ch.isdigit():
                tz = rest[i:]
                break
            digits += ch
        frac = digits
    elif text.endswith("Z"):
        main = text[:-1]
    elif len(text) > 19:
        main, tz = text[:19], text[19:]
    tz = "+00:00" if tz in ("Z", "") else tz
    try:
        dt = datetime.fromisoformat(main + tz)
    except ValueError:
        raise ValueError(f"invalid time {text!r}")
    return dt.timestamp() + (float("0." + frac) if frac else 0.0)


class JsonLog:
    """The writer side: lines from the stdio copier, rotated by size."""

    def __init__(self, path: str, config: dict[str, str] | None = None):
        self.path = path
        config = config or {}
        self.max_size = parse_size(config["max-size"]) if config.get("max-size") else 0
        self.max_file = int(config.get("max-file") or 1)
        self.partial: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        buf = self.partial.get(stream, b"") + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        # Docker splits very long lines into 16K partial messages
        if len(self.partial[stream]) >= 16384:
            lines.append(self.partial[stream])
            self.partial[stream] = b""
            self._emit(stream, lines[:-1], True)
            self._emit(stream, lines[-1:], False)
            return
        self._emit(stream, lines, True)

    def _emit(self, stream: str, lines: list[bytes], newline: bool) -> None:
        if not lines:
            return
        stamp = rfc3339(time.time())
        out: list[bytes] = []
        size = self.size
        for line in lines:
            text = line.decode("utf-8", "replace") + ("\n" if newline else "")
            entry = json.dumps({"log": text, "stream": stream, "time": stamp}).encode() + b"\n"
            if self.max_size and size + len(entry) > self.max_size and size > 0:
                # the batch so far goes to the current file; the rest starts a new one
                self._write(b"".join(out))
                out, size = [], 0
                self._rotate()
            out.append(entry)
            size += len(entry)
        self._write(b"".join(out))

    def _write(self, blob: bytes) -> None:
        if blob:
            os.write(self.fd, blob)
            self.size += len(blob)

    def flush(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self._emit(stream, [rest], False)
                self.partial[stream] = b""

    def _rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 0, -1):
                src = self.path if i == 1 else f"{self.path}.{i - 1}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{i}")
        else:
            os.truncate(self.path, 0)
        self.fd = os.open(
            self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_TRUNC, 0o640
        )
        self.size = 0

    def close(self) -> None:
        self.flush()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _entries(path: str) -> list[dict[str, Any]]:
    out = []
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue
    except FileNotFoundError:
        pass
    return out


def read_entries(path: str, max_file: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for i in range(max(max_file, 1) - 1, 0, -1):
        entries += _entries(f"{path}.{i}")
    entries += _entries(path)
    return entries


async def follow_entries(
    path: str, max_file: int, tail: int | None, running: Any
) -> AsyncIterator[dict[str, Any]]:
    """What is in the log (the last `tail` entries), then, while running() is true,
    what is appended, across rotations."""
    entries = read_entries(path, max_file)
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    for e in entries:
        yield e
    if running is None:
        return
    try:
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        return
    f.seek(0, os.SEEK_END)
    ino = os.fstat(f.fileno()).st_ino
    buf = b""
    try:
        while True:
            chunk = f.read(65536)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue
                continue
            try:
                if os.stat(path).st_ino != ino:  # rotated: read the new file from its start
                    f.close()
                    f = open(path, "rb")  # noqa: SIM115
                    ino = os.fstat(f.fileno()).st_ino
                    continue
            except FileNotFoundError:
                pass
            if not running():
                chunk = f.read()
                if not chunk:
                    return
                buf += chunk
                continue
            await asyncio.sleep(0.05)
    finally:
        f.close()
