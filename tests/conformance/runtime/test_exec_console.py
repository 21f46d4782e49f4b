"""exec, ps, terminals over --console-socket, --preserve-fds and fd leaks.

Runtime CLI boundary of DESIGN.md; the pty master arrives over SCM_RIGHTS at a
receiver written here, as a shim would receive it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from runtime_harness import Bundle, ConsoleReceiver, Runtime, host_ns, pid_alive, wait_for

pytestmark = pytest.mark.root


def test_exec_joins_the_container(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["hostname"] = "exec-target"
    pid = runtime.start_running(bundle)
    res = runtime.exec(
        bundle.id, "sh", "-c", "hostname; echo $$; readlink /proc/self/ns/pid; ps -o pid,comm"
    )
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "exec-target"
    assert out[1] != "1"
    assert out[2] == host_ns("pid", pid)
    assert any(line.split() == ["1", "sleep"] for line in out[3:]), out


def test_exec_namespaces_match_init(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle)
    for ns in ("pid", "mnt", "net", "ipc", "uts"):
        res = runtime.exec(bundle.id, "readlink", f"/proc/self/ns/{ns}")
        assert res.stdout.strip() == host_ns(ns, pid), ns


def test_exec_exit_code_and_stdio(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    res = runtime.exec(bundle.id, "sh", "-c", "cat; echo err >&2; exit 5", input="piped\n")
    assert res.returncode == 5
    assert res.stdout == "piped\n"
    assert "err" in res.stderr


def test_exec_env_cwd_user(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    res = runtime.exec(
        bundle.id,
        "sh",
        "-c",
        "echo $FOO $BAR; pwd; id -u; id -g",
        opts=("-e", "FOO=foo", "-e", "BAR=bar", "--cwd", "/tmp", "-u", "1000:1000"),
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["foo bar", "/tmp", "1000", "1000"]


def test_exec_inherits_process_env(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["env"].append("FROM_CONFIG=yes")
    runtime.start_running(bundle)
    res = runtime.exec(bundle.id, "sh", "-c", "echo $FROM_CONFIG")
    assert res.stdout.strip() == "yes"


def test_exec_process_json(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    process = {
        "terminal": False,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [20]},
        "args": [
            "sh",
            "-c",
            "echo $MSG; pwd; id -u; grep -E 'Groups|NoNewPrivs' /proc/self/status",
        ],
        "env": ["PATH=/bin", "MSG=from-process-json"],
        "cwd": "/etc",
        "noNewPrivileges": True,
    }
    path = bundle.path / "process.json"
    path.write_text(json.dumps(process))
    res = runtime("exec", "--process", str(path), bundle.id)
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[:3] == ["from-process-json", "/etc", "1000"]
    assert out[3].split() == ["Groups:", "20"]
    assert out[4].split() == ["NoNewPrivs:", "1"]


def test_exec_detached_with_pid_file(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle)
    pid_file = bundle.path / "exec.pid"
    with open(bundle.path / "exec.out", "wb") as out:
        res = runtime(
            "exec", "-d", "--pid-file", str(pid_file), bundle.id, "sleep", "999",
            stdout=out, stderr=out,
        )  # fmt: skip
    assert res.returncode == 0, (bundle.path / "exec.out").read_text()
    exec_pid = int(pid_file.read_text())
    runtime.pids.add(exec_pid)
    assert pid_alive(exec_pid)
    assert host_ns("pid", exec_pid) == host_ns("pid", pid)
    assert Path(f"/proc/{exec_pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", b"999"]


def test_exec_in_stopped_container_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("true")
    runtime.create(bundle)
    runtime.ok("start", bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    res = runtime.exec(bundle.id, "true")
    assert res.returncode != 0
    assert res.stderr.strip()


def test_exec_tty_over_console_socket(
    runtime: Runtime, bundle: Bundle, console: ConsoleReceiver
) -> None:
    runtime.start_running(bundle)
    with open(bundle.path / "exec.out", "wb") as out:
        res = runtime(
            "exec", "-t", "-d", "--console-socket", str(console.path), bundle.id,
            "sh", "-c", "tty; stty size; echo exec-on-tty",
            stdout=out, stderr=out,
        )  # fmt: skip
    assert res.returncode == 0, (bundle.path / "exec.out").read_text()
    console.wait_master()
    text = console.wait_output(b"exec-on-tty").decode()
    assert "/dev/pts/" in text
    assert "\r\n" in text  # the line discipline of a real pty


def test_terminal_container_over_console_socket(
    runtime: Runtime, bundle: Bundle, console: ConsoleReceiver
) -> None:
    bundle.process["terminal"] = True
    bundle.process["consoleSize"] = {"height": 31, "width": 101}
    bundle.shell("tty; stty size; read line; echo got:$line")
    runtime.create(bundle, "--console-socket", str(console.path))
    console.wait_master()
    runtime.ok("start", bundle.id)
    console.wait_output(b"31 101")
    console.write(b"typed\n")
    text = console.wait_output(b"got:typed").decode()
    assert "/dev/pts/0" in text
    runtime.wait_status(bundle.id, "stopped")


def test_terminal_without_console_socket_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["terminal"] = True
    res = runtime.create(bundle, check=False)
    assert res.returncode != 0
    assert res.stderr.strip()


def fds_of_init(out: str) -> list[str]:
    return sorted(line.split()[-3] for line in out.splitlines() if "->" in line)


def test_no_host_fd_leaks(runtime: Runtime, bundle: Bundle, workdir: Path) -> None:
    # The runtime is handed an extra descriptor it was not told to preserve.
    extra = os.open(workdir, os.O_RDONLY)
    try:
        bundle.shell("ls -l /proc/1/fd; true")
        res = runtime.run(bundle, pass_fds=(extra,))
    finally:
        os.close(extra)
    assert res.returncode == 0, res.stderr
    assert fds_of_init(res.stdout) == ["0", "1", "2"], res.stdout


def test_preserve_fds(runtime: Runtime, bundle: Bundle, workdir: Path) -> None:
    payload = workdir / "payload"
    payload.write_text("preserved payload\n")
    fd = os.open(payload, os.O_RDONLY)
    try:
        bundle.shell("ls -l /proc/1/fd; cat <&3")
        res = runtime.run(bundle, "--preserve-fds", "1", fd_map={3: fd})
    finally:
        os.close(fd)
    assert res.returncode == 0, res.stderr
    assert fds_of_init(res.stdout) == ["0", "1", "2", "3"], res.stdout
    assert "preserved payload" in res.stdout


def test_exec_no_host_fd_leaks(runtime: Runtime, bundle: Bundle, workdir: Path) -> None:
    runtime.start_running(bundle)
    extra = os.open(workdir, os.O_RDONLY)
    try:
        res = runtime.exec(bundle.id, "sh", "-c", "ls -l /proc/$$/fd; true", pass_fds=(extra,))
    finally:
        os.close(extra)
    assert res.returncode == 0, res.stderr
    assert fds_of_init(res.stdout) == ["0", "1", "2"], res.stdout


def test_init_cannot_reach_host_binary(runtime: Runtime, bundle: Bundle) -> None:
    # /proc/1/exe must be the container's busybox, never the runtime's interpreter.
    bundle.shell("ls -l /proc/1/exe; true")
    out = runtime.run_ok(bundle)
    assert "/bin/busybox" in out or "/bin/sh" in out, out


def test_ps_table_and_json(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle, "sleep 1000 & sleep 1000")
    wait_for(lambda: len(json.loads(runtime.ok("ps", "--format", "json", bundle.id).stdout)) == 2)
    pids = json.loads(runtime.ok("ps", "--format", "json", bundle.id).stdout)
    assert pid in pids
    assert all(isinstance(p, int) and pid_alive(p) for p in pids)

    table = runtime.ok("ps", bundle.id).stdout.splitlines()
    header = table[0].split()
    assert "PID" in header and "CMD" in header
    pid_col = header.index("PID")
    assert sorted(int(row.split()[pid_col]) for row in table[1:]) == sorted(pids)


def test_ps_of_unknown_container_fails(runtime: Runtime) -> None:
    assert runtime("ps", "no-such-container").returncode != 0
