"""skiff.runtime.quick: the lean `start` and `delete`, and when they leave the work to
the full path. Real files, a real FIFO and real processes; the cgroup is a plain
directory tree (a v2 layout under a temporary root), as rmdir treats both alike."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.runtime import quick, state


def _save(
    root: Path, cid: str, pid: int, cgroup_root: Path, hooks: dict[str, list[object]]
) -> Path:
    directory = root / cid
    directory.mkdir(parents=True)
    data = {
        "id": cid,
        "pid": pid,
        "start_time": state.proc_start_time(pid) if pid else None,
        "bundle": "/nonexistent",
        "rootfs": "/nonexistent/rootfs",
        "created": state.now_rfc3339(),
        "owner": "",
        "config": {"ociVersion": "1.0.2", "hooks": hooks},
        "cgroup": {"root": str(cgroup_root), "unified": True, "paths": {"": f"/{cid}"}},
    }
    state.Container(str(root), cid, data).save()
    (cgroup_root / cid).mkdir(parents=True)
    return directory


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_delete_of_a_stopped_container_removes_state_and_cgroup(tmp_path: Path) -> None:
    directory = _save(tmp_path / "root", "c1", 0, tmp_path / "cg", {})
    (directory / "exec.fifo").write_bytes(b"")
    assert quick.delete(str(tmp_path / "root"), "c1")
    assert not directory.exists()
    assert not (tmp_path / "cg" / "c1").exists()


def test_delete_leaves_a_running_container_to_the_full_path(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    directory = _save(tmp_path / "root", "c2", sleeper.pid, tmp_path / "cg", {})
    assert not quick.delete(str(tmp_path / "root"), "c2")
    assert (directory / "state.json").exists()
    assert (tmp_path / "cg" / "c2").is_dir()


def test_delete_with_poststop_hooks_or_a_busy_cgroup_goes_to_the_full_path(
    tmp_path: Path,
) -> None:
    hooked = _save(tmp_path / "root", "c3", 0, tmp_path / "cg", {"poststop": [{"path": "/x"}]})
    assert not quick.delete(str(tmp_path / "root"), "c3")
    assert hooked.exists()
    busy = _save(tmp_path / "root", "c4", 0, tmp_path / "cg", {})
    (tmp_path / "cg" / "c4" / "child").mkdir()  # rmdir fails (ENOTEMPTY, not EBUSY): as Manager
    assert quick.delete(str(tmp_path / "root"), "c4")
    assert not busy.exists()


def test_unknown_invalid_or_corrupt_containers_go_to_the_full_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert not quick.delete(str(root), "missing")
    assert not quick.start(str(root), "missing")
    assert not quick.delete(str(root), "../escape")
    (root / "bad").mkdir(parents=True)
    (root / "bad" / "state.json").write_text("{not json")
    assert not quick.delete(str(root), "bad")
    assert (root / "bad" / "state.json").exists()


def test_start_releases_a_waiting_init_and_removes_the_fifo(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    directory = _save(tmp_path / "root", "c5", sleeper.pid, tmp_path / "cg", {})
    fifo = directory / "exec.fifo"
    os.mkfifo(fifo, 0o622)
    # stands in for init: blocks opening the FIFO for writing, then writes its byte
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os; fd = os.open({str(fifo)!r}, os.O_WRONLY); os.write(fd, b'0')",
        ]
    )
    try:
        deadline = time.monotonic() + 10
        # until the writer is inside open(), start finds no writer and declines
        while not quick.start(str(tmp_path / "root"), "c5"):
            assert fifo.exists()
            assert writer.poll() is None
            assert time.monotonic() < deadline, "start never released the writer"
            time.sleep(0.005)
        assert writer.wait(timeout=10) == 0
        assert not fifo.exists()
    finally:
        writer.kill()
        writer.wait()


def test_start_without_a_writer_or_a_live_init_goes_to_the_full_path(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    waiting = _save(tmp_path / "root", "c6", sleeper.pid, tmp_path / "cg", {})
    os.mkfifo(waiting / "exec.fifo", 0o622)
    assert not quick.start(str(tmp_path / "root"), "c6")  # no writer: end of file at once
    assert (waiting / "exec.fifo").exists()
    dead = _save(tmp_path / "root", "c7", 0, tmp_path / "cg", {})
    os.mkfifo(dead / "exec.fifo", 0o622)
    assert not quick.start(str(tmp_path / "root"), "c7")
    hooked = _save(tmp_path / "root", "c8", sleeper.pid, tmp_path / "cg", {"poststart": [{}]})
    os.mkfifo(hooked / "exec.fifo", 0o622)
    assert not quick.start(str(tmp_path / "root"), "c8")
