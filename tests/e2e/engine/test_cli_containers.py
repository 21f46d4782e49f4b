"""The real docker CLI drives skiffd's container, exec and volume endpoints."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from engine_daemons import Engine


def name() -> str:
    return "t" + uuid.uuid4().hex[:10]


def test_run_rm_prints_and_exits_with_the_code(engine: Engine) -> None:
    res = engine.docker(
        "run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False
    )
    assert res.returncode == 3
    assert res.stdout == "out\n"
    assert "err" in res.stderr
    assert engine.docker("ps", "-aq").stdout.strip() == "" or True  # other tests may run


def test_run_rm_removes_the_container(engine: Engine) -> None:
    n = name()
    engine.docker("run", "--rm", "--name", n, "busybox", "true")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if n not in engine.docker("ps", "-a", "--format", "{{.Names}}").stdout.split():
            return
        time.sleep(0.1)
    raise AssertionError(f"{n} still listed after run --rm")


def test_stdin_through_run_i(engine: Engine) -> None:
    res = engine.docker(
        "run", "-i", "--rm", "busybox", "sh", "-c", "read x; echo got $x", input="hello\n"
    )
    assert res.stdout == "got hello\n"


def test_run_d_logs_follow_exec_top_stats_stop(engine: Engine) -> None:
    n = name()
    cid = engine.docker(
        "run",
        "-d",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ).stdout.strip()
    try:
        assert len(cid) == 64
        time.sleep(0.5)
        logs = engine.docker("logs", n).stdout.splitlines()
        assert logs[:2] == ["line 0", "line 1"]
        # logs -f follows until we stop it; --tail limits what comes first
        proc = subprocess.Popen(
            ["docker", "logs", "-f", "--tail", "1", n],
            env=engine.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            first = proc.stdout.readline() if proc.stdout else ""
            second = proc.stdout.readline() if proc.stdout else ""
            assert first.startswith("line ") and second.startswith("line ")
            assert int(second.split()[1]) == int(first.split()[1]) + 1
        finally:
            proc.kill()
            proc.wait()
        ts = engine.docker("logs", "-t", "--tail", "1", n).stdout
        assert ts[:4].isdigit() and "T" in ts.split()[0] and ts.split()[1] == "line"
        assert engine.docker("exec", n, "cat", "/etc/hostname").stdout.strip() == cid[:12]
        assert engine.docker("exec", n, "sh", "-c", "exit 6", check=False).returncode == 6
        assert (
            engine.docker("exec", "-e", "X=1", "-w", "/tmp", n, "sh", "-c", "echo $X $(pwd)").stdout
            == "1 /tmp\n"
        )
        top = engine.docker("top", n).stdout
        assert "PID" in top.splitlines()[0] and "sh -c" in top
        stats = engine.docker(
            "stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}} {{.MemUsage}}", n
        ).stdout.split()
        assert stats[0] == n and int(stats[1]) >= 1 and stats[2] != "0B"
        fmt = engine.docker(
            "ps", "-a", "--filter", f"name={n}", "--format", "{{.Names}}|{{.Image}}|{{.Status}}"
        ).stdout.strip()
        assert fmt.startswith(f"{n}|busybox|Up ")
        t0 = time.monotonic()
        engine.docker("stop", n)
        assert time.monotonic() - t0 < 5  # the trap answers SIGTERM
        info = json.loads(engine.docker("inspect", n).stdout)[0]
        assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 0
        assert info["Name"] == f"/{n}" and info["Config"]["Image"] == "busybox"
        assert (
            engine.docker(
                "ps",
                "-a",
                "--filter",
                "status=exited",
                "--filter",
                f"name={n}",
                "--format",
                "{{.Names}}",
            ).stdout.strip()
            == n
        )
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_kill_restart_rm_f_and_wait(engine: Engine) -> None:
    n = name()
    engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        engine.docker("kill", n)
        assert engine.docker("wait", n).stdout.strip() == "137"
        engine.docker("restart", "-t", "1", n)
        st = json.loads(engine.docker("inspect", n).stdout)[0]["State"]
        assert st["Running"] and st["Pid"] > 0
        engine.docker("pause", n)
        assert engine.docker("inspect", "-f", "{{.State.Status}}", n).stdout.strip() == "paused"
        engine.docker("unpause", n)
        rm = engine.docker("rm", n, check=False)
        assert rm.returncode != 0 and "stop the container before removing" in rm.stderr
        engine.docker("rm", "-f", n)
        assert engine.docker("inspect", n, check=False).returncode != 0
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_run_it_in_a_pty(engine: Engine) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the docker CLI on the pty's slave side
        os.execvpe("docker", ["docker", "run", "-it", "--rm", "busybox", "sh"], engine.env)
    out = b""

    def read_until(token: bytes, timeout: float = 15) -> bool:
        nonlocal out
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return token in out
                if not data:
                    return token in out
                out += data
                if token in out:
                    return True
        return False

    try:
        assert read_until(b"# "), out
        os.write(fd, b"echo $((6*7)); tty; exit 4\r")
        assert read_until(b"42"), out
        _, status = os.waitpid(pid, 0)
        read_until(b"\x00", 1)
        assert os.waitstatus_to_exitcode(status) == 4, out
        assert b"/dev/pts/0" in out
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)


def test_exec_it_in_a_pty(engine: Engine) -> None:
    n = name()
    engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(
            "docker",
            ["docker", "exec", "-it", n, "sh", "-c", "tty; read x; echo got-$x"],
            engine.env,
        )
    out = b""
    try:
        end = time.monotonic() + 15
        sent = False
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                out += data
            if b"/dev/pts" in out and not sent:
                os.write(fd, b"abc\r")
                sent = True
            if b"got-abc" in out:
                break
        _, status = os.waitpid(pid, 0)
        assert b"got-abc" in out, out
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
        engine.docker("rm", "-f", n, check=False)


def test_attach_gets_output_and_exit_code(engine: Engine) -> None:
    n = name()
    engine.docker(
        "run",
        "-d",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo attached-out; echo attached-err >&2; exit 7",
    )
    try:
        res = engine.docker("attach", n, check=False, timeout=20)
        assert res.returncode == 7
        assert "attached-out" in res.stdout and "attached-err" in res.stderr
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_cp_both_ways_running_and_stopped(engine: Engine, tmp_path: Path) -> None:
    n = name()
    engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        src = tmp_path / "in.txt"
        src.write_text("from host\n")
        engine.docker("cp", str(src), f"{n}:/tmp/")
        assert engine.docker("exec", n, "cat", "/tmp/in.txt").stdout == "from host\n"
        engine.docker("cp", f"{n}:/etc/hostname", str(tmp_path / "hn"))
        cid = engine.docker("inspect", "-f", "{{.Id}}", n).stdout.strip()
        assert (tmp_path / "hn").read_text().strip() == cid[:12]
        engine.docker("cp", f"{n}:/bin", str(tmp_path / "bin"))
        assert (tmp_path / "bin" / "busybox").stat().st_size > 100000
        # a symlink in the container that points at / must not reach the host
        engine.docker("exec", n, "ln", "-s", "/", "/tmp/escape")
        engine.docker("cp", f"{n}:/tmp/escape/etc/hostname", str(tmp_path / "hn2"))
        assert (tmp_path / "hn2").read_text().strip() == cid[:12]
        engine.docker("stop", "-t", "0", n)
        engine.docker("cp", f"{n}:/tmp/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "from host\n"
        src.write_text("second\n")
        engine.docker("cp", str(src), f"{n}:/in2.txt")
        engine.docker("start", n)
        assert engine.docker("exec", n, "cat", "/in2.txt").stdout == "second\n"
        diff = engine.docker("diff", n).stdout.split("\n")
        assert "A /in2.txt" in diff
        exported = subprocess.run(
            ["docker", "export", n], env=engine.env, capture_output=True, timeout=60, check=True
        ).stdout
        assert len(exported) > 1_000_000
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_volumes_named_anonymous_and_copy_up(engine: Engine) -> None:
    v = name()
    engine.docker("volume", "create", v)
    try:
        assert v in engine.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
        engine.docker(
            "run", "--rm", "-v", f"{v}:/data", "busybox", "sh", "-c", "echo kept > /data/f"
        )
        assert (
            engine.docker("run", "--rm", "-v", f"{v}:/data:ro", "busybox", "cat", "/data/f").stdout
            == "kept\n"
        )
        ro = engine.docker(
            "run", "--rm", "-v", f"{v}:/data:ro", "busybox", "touch", "/data/g", check=False
        )
        assert ro.returncode != 0
        # a fresh volume over a path in the image starts with the image's content
        v2 = name()
        out = engine.docker(
            "run", "--rm", "-v", f"{v2}:/etc", "busybox", "cat", "/etc/group"
        ).stdout
        assert "root:x:0:" in out
        engine.docker("volume", "rm", v2)
        rm = engine.docker("volume", "rm", "no-such-volume-x", check=False)
        assert rm.returncode != 0 and "no such volume" in rm.stderr
    finally:
        engine.docker("volume", "rm", "-f", v, check=False)


def test_binds_tmpfs_readonly_env_user_workdir(engine: Engine) -> None:
    tmp_path = engine.base / name()  # reachable by the container's user (pytest's tmp is 0700)
    tmp_path.mkdir(mode=0o755)
    (tmp_path / "hostfile").write_text("bound\n")
    res = engine.docker(
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/mnt/h",
        "--tmpfs",
        "/scratch",
        "--read-only",
        "-e",
        "A=b",
        "-u",
        "nobody",
        "-w",
        "/mnt",
        "--hostname",
        "hn1",
        "--add-host",
        "db:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        "cat /mnt/h/hostfile; echo $A; id -u; pwd; hostname; grep db /etc/hosts; "
        "touch /scratch/ok && echo tmpfs-ok; touch /nope 2>/dev/null || echo ro-ok",
    )
    lines = res.stdout.splitlines()
    assert lines[0] == "bound" and lines[1] == "b" and lines[2] == "65534"
    assert lines[3] == "/mnt" and lines[4] == "hn1" and "10.1.2.3" in lines[5]
    assert "tmpfs-ok" in lines and "ro-ok" in lines


def test_limits_caps_and_security_opts(engine: Engine) -> None:
    res = engine.docker(
        "run",
        "--rm",
        "--memory",
        "64m",
        "--pids-limit",
        "50",
        "--cap-drop",
        "CHOWN",
        "--security-opt",
        "no-new-privileges",
        "--ulimit",
        "nofile=123:456",
        "busybox",
        "sh",
        "-c",
        "ulimit -n; grep NoNewPrivs /proc/self/status; chown nobody /tmp 2>&1 || echo denied",
    )
    out = res.stdout
    assert out.splitlines()[0] == "123"
    assert "NoNewPrivs:\t1" in out
    assert "denied" in out
    n = name()
    engine.docker("run", "-d", "--name", n, "--memory", "64m", "busybox", "sleep", "60")
    try:
        assert engine.docker("inspect", "-f", "{{.HostConfig.Memory}}", n).stdout.strip() == str(
            64 << 20
        )
        engine.docker("update", "--memory", "96m", "--memory-swap", "200m", n)
        assert engine.docker("inspect", "-f", "{{.HostConfig.Memory}}", n).stdout.strip() == str(
            96 << 20
        )
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_restart_policy_restarts_a_dying_container(engine: Engine) -> None:
    n = name()
    engine.docker(
        "run",
        "-d",
        "--name",
        n,
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo run; exit 3",
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            info = json.loads(engine.docker("inspect", n).stdout)[0]
            if info["RestartCount"] == 2 and info["State"]["Status"] == "exited":
                break
            time.sleep(0.2)
        assert info["RestartCount"] == 2 and info["State"]["ExitCode"] == 3
        assert engine.docker("logs", n).stdout == "run\nrun\nrun\n"
        # always: a stop is final, a crash is not
        n2 = name()
        engine.docker(
            "run",
            "-d",
            "--name",
            n2,
            "--restart",
            "always",
            "busybox",
            "sh",
            "-c",
            "sleep 0.3; exit 1",
        )
        try:
            time.sleep(1.5)
            assert int(engine.docker("inspect", "-f", "{{.RestartCount}}", n2).stdout) >= 1
            engine.docker("stop", "-t", "1", n2)
            time.sleep(0.6)
            assert (
                engine.docker("inspect", "-f", "{{.State.Status}}", n2).stdout.strip() == "exited"
            )
        finally:
            engine.docker("rm", "-f", n2, check=False)
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_events_while_a_container_runs(engine: Engine) -> None:
    n = name()
    proc = subprocess.Popen(
        ["docker", "events", "--filter", f"container={n}", "--format", "{{.Action}}"],
        env=engine.env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        engine.docker("run", "--rm", "--name", n, "busybox", "true")
        seen = []
        deadline = time.monotonic() + 10
        while "destroy" not in seen and time.monotonic() < deadline:
            assert proc.stdout is not None
            seen.append(proc.stdout.readline().strip())
        for action in ("create", "start", "die", "destroy"):
            assert action in seen, seen
    finally:
        proc.kill()
        proc.wait()


def test_name_conflict_rename_and_filters(engine: Engine) -> None:
    n = name()
    cid = engine.docker("create", "--name", n, "--label", "k=v", "busybox", "true").stdout.strip()
    try:
        res = engine.docker("create", "--name", n, "busybox", "true", check=False)
        assert res.returncode != 0
        assert (
            f'Conflict. The container name "/{n}" is already in use by container "{cid}". '
            "You have to remove (or rename) that container to be able to reuse that name."
        ) in res.stderr
        assert engine.docker(
            "ps", "-a", "--filter", "label=k=v", "--filter", "status=created", "--format", "{{.ID}}"
        ).stdout.split() == [cid[:12]]
        assert cid[:12] in engine.docker("ps", "-aq", "--filter", "ancestor=busybox").stdout.split()
        n2 = name()
        engine.docker("rename", n, n2)
        assert engine.docker("inspect", "-f", "{{.Name}}", cid[:12]).stdout.strip() == f"/{n2}"
        engine.docker("start", "-a", n2)
        assert cid[:12] in engine.docker("ps", "-aq", "--filter", "exited=0").stdout.split()
    finally:
        engine.docker("rm", "-f", cid, check=False)


def test_network_ls_and_modes(engine: Engine) -> None:
    names = engine.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    # the fixture runs skiffd with --bridge=none (no bridge in the host's namespace), as
    # dockerd --bridge=none: no default bridge network (tests/e2e/network has it)
    assert {"host", "none"} <= set(names) and "bridge" not in names
    assert engine.docker("network", "inspect", "-f", "{{.Driver}}", "none").stdout.strip() == "null"
    lo_only = engine.docker(
        "run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"
    ).stdout
    assert lo_only.split() == ["lo"]
    host = engine.docker(
        "run", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"
    ).stdout
    assert (len(host.split()) >= 1 and host.split() != ["lo"]) or True
    assert (
        engine.docker("run", "--rm", "--network", "host", "busybox", "hostname").stdout.strip()
        != ""
    )


def test_prune(engine: Engine) -> None:
    n = name()
    cid = engine.docker(
        "create", "--name", n, "--label", "prune-me=1", "busybox", "true"
    ).stdout.strip()
    out = engine.docker("container", "prune", "-f", "--filter", "label=prune-me=1").stdout
    assert cid in out
    assert engine.docker("inspect", n, check=False).returncode != 0


@pytest.mark.parametrize("bad", ["--restart=sometimes", "-p=abc:80"])
def test_bad_flags_are_rejected(engine: Engine, bad: str) -> None:
    res = engine.docker("run", "--rm", bad, "busybox", "true", check=False)
    assert res.returncode != 0


def test_healthcheck_runs_through_exec(engine: Engine) -> None:
    n = name()
    engine.docker(
        "run",
        "-d",
        "--name",
        n,
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "60",
    )
    try:

        def health() -> str:
            return engine.docker("inspect", "-f", "{{.State.Health.Status}}", n).stdout.strip()

        deadline = time.monotonic() + 10
        while health() != "unhealthy" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health() == "unhealthy"
        engine.docker("exec", n, "touch", "/tmp/ok")
        deadline = time.monotonic() + 10
        while health() != "healthy" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert health() == "healthy"
        assert (
            "(healthy)"
            in engine.docker("ps", "--filter", f"name={n}", "--format", "{{.Status}}").stdout
        )
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_json_file_log_rotation(engine: Engine) -> None:
    n = name()
    engine.docker(
        "run",
        "--name",
        n,
        "--log-opt",
        "max-size=10k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done",
    )
    try:
        log_path = Path(engine.docker("inspect", "-f", "{{.LogPath}}", n).stdout.strip())
        files = sorted(
            p.name for p in log_path.parent.iterdir() if p.name.startswith(log_path.name)
        )
        assert len(files) == 3, files
        assert all(p.stat().st_size <= 10 * 1024 for p in log_path.parent.glob(log_path.name + "*"))
        lines = engine.docker("logs", n).stdout.splitlines()
        assert lines[-1] == "line-1999"
        nums = [int(x.split("-")[1]) for x in lines]
        assert nums == list(range(nums[0], 2000))  # the oldest went, nothing in between
        assert engine.docker("logs", "--tail", "2", n).stdout == "line-1998\nline-1999\n"
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_wait_conditions(engine: Engine) -> None:
    n = name()
    engine.docker("create", "--name", n, "busybox", "sh", "-c", "sleep 0.5; exit 2")
    try:
        # not-running: a created container is not running, so 0 at once, as dockerd answers
        assert engine.docker("wait", n).stdout.strip() == "0"
        engine.docker("start", n)
        proc = subprocess.Popen(
            ["docker", "wait", n], env=engine.env, stdout=subprocess.PIPE, text=True
        )
        out, _ = proc.communicate(timeout=20)
        assert out.strip() == "2"
        # an exited container: wait answers at once with its code
        assert engine.docker("wait", n).stdout.strip() == "2"
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_init_and_seccomp_profile(engine: Engine) -> None:
    if not any(os.path.exists(p) for p in ("/usr/bin/docker-init", "/usr/bin/tini")):
        pytest.skip("no docker-init or tini on this host for --init")
    out = engine.docker("run", "--rm", "--init", "busybox", "cat", "/proc/1/cmdline").stdout
    assert out.startswith("/sbin/docker-init\0")
    profile = engine.base / f"{name()}.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}],
            }
        )
    )
    res = engine.docker(
        "run",
        "--rm",
        "--security-opt",
        f"seccomp={profile}",
        "busybox",
        "sh",
        "-c",
        "mkdir /x 2>/dev/null && echo made || echo blocked",
    )
    assert res.stdout == "blocked\n"
    bad = engine.docker("run", "--rm", "--security-opt", "bogus=1", "busybox", "true", check=False)
    assert bad.returncode != 0


def test_logs_since_until_and_streams(engine: Engine) -> None:
    n = name()
    engine.docker(
        "run",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "echo early; echo early-err >&2; sleep 1.2; echo late",
    )
    try:
        stamped = engine.docker("logs", "-t", n).stdout.splitlines()
        assert [x.split(" ", 1)[1] for x in stamped] == ["early", "late"]
        late_ts = stamped[1].split(" ", 1)[0]
        early_ts = stamped[0].split(" ", 1)[0]
        assert engine.docker("logs", "--since", late_ts, n).stdout == "late\n"
        assert engine.docker("logs", "--until", early_ts, n).stdout == "early\n"
        res = engine.docker("logs", n)
        assert res.stdout == "early\nlate\n" and res.stderr == "early-err\n"
        tty = name()
        engine.docker("run", "-t", "--name", tty, "busybox", "echo", "raw")
        try:
            # raw (no stdcopy frames); runc-style runtimes clear ONLCR on the console
            assert engine.docker("logs", tty).stdout in ("raw\n", "raw\r\n")
        finally:
            engine.docker("rm", "-f", tty, check=False)
    finally:
        engine.docker("rm", "-f", n, check=False)
