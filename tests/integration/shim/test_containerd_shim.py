"""Debian's containerd 1.6 drives skiff-shim (runtime io.containerd.skiff.v1) through ctr."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from shim_containerd import IMAGE, RUNTIME, VENV_BIN, Containerd

pytestmark = pytest.mark.root


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def task_status(cd: Containerd, container_id: str) -> str:
    for line in cd.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return fields[-1]
    return ""


def test_run_rm_prints_output(containerd: Containerd) -> None:
    result = containerd.ctr(*containerd.run_args("--rm", IMAGE, "echo1", "echo", "hi"))
    assert result.stdout == "hi\n"
    assert containerd.ctr("container", "ls", "-q").stdout.strip() == ""


def test_exit_code_and_stderr_pass_through(containerd: Containerd) -> None:
    result = containerd.ctr(
        *containerd.run_args("--rm", IMAGE, "exit1", "sh", "-c", "echo out; echo err >&2; exit 7"),
        check=False,
    )
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr


def test_stdin_reaches_the_container(containerd: Containerd) -> None:
    # As containerd's runc shim, skiff-shim holds a writer of its own on the stdin FIFO
    # (a client that dies is no EOF): the EOF is the client's CloseIO. Debian's ctr 1.6
    # may read its stdin's EOF before it can call CloseIO and then waits forever, with
    # io.containerd.runc.v2 too; skiff-ctr calls CloseIO once its copy is done.
    data = b"".join(b"line %d through the fifo\n" % i for i in range(20000))
    client = [str(VENV_BIN / "skiff-ctr"), "--address", containerd.address]
    run = ["--namespace", containerd.namespace, "run", "--runtime", RUNTIME, "--rm"]
    result = subprocess.run(
        [*client, *run, IMAGE, "cat1", "cat"],
        input=data,
        capture_output=True,
        timeout=60,
        env=containerd.env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == data


def test_detached_task_lifecycle(containerd: Containerd) -> None:
    cd = containerd
    cd.ctr(*cd.run_args("-d", IMAGE, "life1", "sleep", "1000"))
    assert task_status(cd, "life1") == "RUNNING"
    pid = int(cd.ctr("task", "ls").stdout.split("\n")[1].split()[1])
    assert os.path.exists(f"/proc/{pid}")

    ps = cd.ctr("task", "ps", "life1").stdout
    assert str(pid) in ps

    ex = cd.ctr(
        "task",
        "exec",
        "--exec-id",
        "ex1",
        "--fifo-dir",
        str(cd.fifo_dir),
        "life1",
        "sh",
        "-c",
        "echo from-exec; exit 5",
        check=False,
    )
    assert ex.stdout == "from-exec\n"
    assert ex.returncode == 5

    cd.ctr("task", "pause", "life1")
    assert task_status(cd, "life1") == "PAUSED"
    with open(f"/proc/{pid}/status") as f:
        assert any(line.startswith("State:") and "(" in line for line in f)
    cd.ctr("task", "resume", "life1")
    assert task_status(cd, "life1") == "RUNNING"

    # sleep as pid 1 ignores SIGTERM, so SIGKILL it
    cd.ctr("task", "kill", "-s", "SIGKILL", "life1")
    wait_for(lambda: task_status(cd, "life1") == "STOPPED", what="task STOPPED")
    assert not os.path.exists(f"/proc/{pid}")
    cd.ctr("task", "rm", "life1")
    cd.ctr("container", "rm", "life1")
    # after delete the shim exits and removes its socket; the template stays
    wait_for(lambda: not cd.shim_pids(), what="shim exit")
    left = os.listdir(os.path.join(cd.tmp, "s"))
    assert [n for n in left if not n.startswith("template-")] == []
    assert len(cd.template_pids()) == 1


def test_events_are_published(containerd: Containerd) -> None:
    import subprocess

    cd = containerd
    events = subprocess.Popen(
        ["ctr", "--address", cd.address, "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cd.env,
    )
    try:
        time.sleep(0.3)
        cd.ctr(*cd.run_args("--rm", IMAGE, "ev1", "true"))
        time.sleep(0.5)
    finally:
        events.terminate()
        out, _ = events.communicate(timeout=10)
    for topic in ("/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"):
        assert any(topic in line and "ev1" in line for line in out.splitlines()), (topic, out)


def test_runtime_from_runtime_config_path(containerd: Containerd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    if shutil.which("crun") is None:
        pytest.skip("crun is not installed")
    cd = containerd
    config = tmp_path / "shim.toml"
    config.write_text('BinaryName = "crun"\n')
    result = cd.ctr(
        *cd.run_args(
            "--rm",
            "--runtime-config-path",
            str(config),
            IMAGE,
            "crun1",
            "sh",
            "-c",
            "echo via-crun",
        ),
        check=False,
    )
    assert "create crun1: runtime /usr/bin/crun" in cd.logs()
    if result.returncode != 0:
        # crun refuses this machine's hybrid cgroup layout (v1 controllers plus
        # cgroup2); the shim must then pass crun's own message through
        assert "crun create failed" in result.stderr, result.stderr
        assert "hybrid" in result.stderr
        print(f"crun cannot run containers here: {result.stderr.strip()}")
    else:
        assert result.stdout == "via-crun\n"


def test_containers_survive_containerd_sigkill(containerd: Containerd) -> None:
    cd = containerd
    cd.ctr(*cd.run_args("-d", IMAGE, "surv1", "sleep", "1000"))
    cd.ctr(*cd.run_args("-d", IMAGE, "surv2", "sh", "-c", "sleep 2; exit 9"))
    pid = int(
        next(
            line.split()[1]
            for line in cd.ctr("task", "ls").stdout.splitlines()
            if line.startswith("surv1")
        )
    )
    shims = cd.shim_pids()
    assert len(shims) == 2
    cd.kill()
    time.sleep(2.5)  # surv2 exits while containerd is down
    assert os.path.exists(f"/proc/{pid}")
    assert all(os.path.exists(f"/proc/{s}") for s in shims)
    cd.start()
    assert task_status(cd, "surv1") == "RUNNING"
    assert task_status(cd, "surv2") == "STOPPED"
    # the exit status recorded while containerd was away is still there
    wait = cd.ctr("task", "start", "surv2", check=False)
    assert wait.returncode != 0  # a stopped task cannot be started again
    cd.ctr("task", "kill", "-s", "SIGKILL", "surv1")
    wait_for(lambda: task_status(cd, "surv1") == "STOPPED", what="surv1 STOPPED")


def test_shim_sigkill_leaves_task_stopped(containerd: Containerd) -> None:
    cd = containerd
    cd.ctr(*cd.run_args("-d", IMAGE, "dead1", "sleep", "1000"))
    pid = int(
        next(
            line.split()[1]
            for line in cd.ctr("task", "ls").stdout.splitlines()
            if line.startswith("dead1")
        )
    )
    (shim,) = cd.shim_pids()
    os.kill(shim, signal.SIGKILL)

    # containerd notices, runs `containerd-shim-skiff-v1 delete`, which kills the container
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="container killed by cleanup")
    started = time.monotonic()
    status = task_status(cd, "dead1")
    assert time.monotonic() - started < 10  # never hung
    assert status in ("", "STOPPED")
    cd.ctr("task", "rm", "-f", "dead1", check=False)
    cd.ctr("container", "rm", "dead1")


def test_terminal_through_the_pty_master(containerd: Containerd) -> None:
    import pty
    import select
    import subprocess

    cd = containerd
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [
            "ctr",
            "--address",
            cd.address,
            "--namespace",
            cd.namespace,
            *cd.run_args("-t", "--rm", IMAGE, "tty1", "sh", "-c", "tty; echo ok-tty"),
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=cd.env,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 4096)
                except OSError:
                    break  # EIO: ctr closed the terminal
                if not data:
                    break
                out += data
            elif proc.poll() is not None:
                break
        assert proc.wait(10) == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"/dev/pts/0" in out
    assert b"ok-tty" in out
