"""`skiff-runc run` and `exec -t` in the foreground without --console-socket: the runtime
keeps the pty master, copies both ways, sets the window size and passes the exit code."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import tarfile
import termios
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RUNC = str(REPO / ".venv" / "bin" / "skiff-runc")
LAYOUT = REPO / "build" / "images" / "busybox-oci"


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    if not (LAYOUT / "index.json").exists():
        pytest.skip("build/images/busybox-oci is missing: run `make images`")
    index = json.loads((LAYOUT / "index.json").read_text())
    blob = lambda d: LAYOUT / "blobs" / d.replace(":", "/")  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    rootfs = tmp_path / "bundle" / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            tar.extractall(rootfs)
    subprocess.run([RUNC, "spec", "--bundle", str(tmp_path / "bundle")], check=True)
    return tmp_path / "bundle"


def _spawn(argv: list[str], rows: int, cols: int) -> tuple[int, int]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    return pid, fd


def _read_until(fd: int, needle: bytes, timeout: float = 10) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 4096)
            except OSError:
                break
    return out


def test_run_with_terminal_in_the_foreground(bundle: Path, tmp_path: Path) -> None:
    cid = "tty-" + uuid.uuid4().hex[:8]
    state = str(tmp_path / "state")
    pid, fd = _spawn([RUNC, "--root", state, "run", "--bundle", str(bundle), cid], 33, 101)
    try:
        assert b"#" in _read_until(fd, b"# ")
        os.write(fd, b"tty; stty size; echo mark-$((6*7))\r")
        out = _read_until(fd, b"mark-42")
        assert b"/dev/pts/0" in out
        assert b"33 101" in out
        os.write(fd, b"exit 7\r")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.waitstatus_to_exitcode(status) == 7
        assert not (tmp_path / "state" / cid).exists()
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
        subprocess.run([RUNC, "--root", state, "delete", "--force", cid], capture_output=True)


def test_exec_with_terminal_in_the_foreground(bundle: Path, tmp_path: Path) -> None:
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "60"]
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = "ttx-" + uuid.uuid4().hex[:8]
    base = [RUNC, "--root", str(tmp_path / "state")]
    pid = 0
    try:
        subprocess.run(
            [*base, "run", "-d", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        pid, fd = _spawn([*base, "exec", "-t", cid, "sh", "-c", "tty; exit 3"], 20, 60)
        out = _read_until(fd, b"/dev/pts/")
        assert b"/dev/pts/" in out
        _, status = os.waitpid(pid, 0)
        pid = 0
        os.close(fd)
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        if pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        subprocess.run([*base, "delete", "--force", cid], capture_output=True)
