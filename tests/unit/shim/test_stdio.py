"""skiff-shim's stdin copy on real FIFOs: a client that goes away is no EOF, CloseIO is."""

from __future__ import annotations

import os
import select
from pathlib import Path

from skiff.shim.stdio import ProcessIO


def _read_some(fd: int, timeout: float) -> bytes | None:
    """What the container's stdin has within timeout (b"" is EOF, None is nothing)."""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 1 << 20) if ready else None


def _read_to_eof(fd: int, timeout: float = 5.0) -> bytes:
    out = b""
    while True:
        chunk = _read_some(fd, timeout)
        assert chunk is not None, f"no EOF within {timeout}s after {len(out)} bytes"
        if not chunk:
            return out
        out += chunk


def test_stdin_survives_its_client_and_ends_on_close_io(tmp_path: Path) -> None:
    stdin = str(tmp_path / "stdin")
    io = ProcessIO(stdin, str(tmp_path / "stdout"), "", False)
    child_in = os.dup(io.open()[0])  # the container's copy of its stdin
    try:
        io.runtime_started()  # the shim drops its copies of what the runtime got
        os.set_blocking(child_in, False)
        # a first client writes and goes away (skiffd killed): data, but no EOF
        w = os.open(stdin, os.O_WRONLY)
        os.write(w, b"first\n")
        os.close(w)
        assert _read_some(child_in, 2.0) == b"first\n"
        assert _read_some(child_in, 0.5) is None
        # the next client feeds the same process; its writes before CloseIO all arrive
        w = os.open(stdin, os.O_WRONLY)
        data = b"".join(b"line %d\n" % i for i in range(20000))
        os.set_blocking(w, False)
        sent = 0
        got = b""
        while sent < len(data):
            try:
                sent += os.write(w, data[sent : sent + 65536])
            except BlockingIOError:
                pass
            got += _read_some(child_in, 0.01) or b""
        io.close_stdin()  # CloseIO while this client still holds its end: no EOF yet
        while (chunk := _read_some(child_in, 0.3)) is not None:
            assert chunk, "EOF while a client still held the FIFO"
            got += chunk
        os.close(w)  # the last writer goes: what is buffered, then EOF
        got += _read_to_eof(child_in)
        assert got == data
    finally:
        os.close(child_in)
        io.close()


def test_process_exit_ends_the_copy(tmp_path: Path) -> None:
    stdin = str(tmp_path / "stdin")
    io = ProcessIO(stdin, str(tmp_path / "stdout"), "", False)
    child_in = os.dup(io.open()[0])
    try:
        io.runtime_started()
        w = os.open(stdin, os.O_WRONLY)
        io.process_exited()
        os.close(w)
        assert _read_to_eof(child_in) == b""
    finally:
        os.close(child_in)
        io.close()
