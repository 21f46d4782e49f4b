"""skiff against Debian's dockerd: container commands, compared with the docker CLI
driving the same daemon (exit codes, ps/inspect formats, logs)."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest
from cli_daemons import SKIFF, Daemon
from cli_fixtures import Runner, skiff_bytes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def test_version_and_info(skiff: Runner, docker: Runner) -> None:
    server = ok(docker("version", "--format", "{{.Server.Version}}")).strip()
    assert ok(skiff("version", "--format", "{{.Server.Version}}")).strip() == server
    out = ok(skiff("version"))
    assert "Client:" in out and f"Version:          {server}" in out
    api = ok(docker("version", "--format", "{{.Server.APIVersion}}")).strip()
    assert f"API version:      {api} (minimum version" in out
    info = ok(skiff("info"))
    assert f"Server Version: {server}" in info
    assert ok(skiff("info", "--format", "{{.ServerVersion}}")).strip() == server
    # the whole server section as docker prints it (Runtimes is a Go map: any order)
    s_lines = [x for x in info.splitlines()[4:] if not x.startswith(" Runtimes:")]
    d_lines = [x for x in ok(docker("info")).splitlines()[4:] if not x.startswith(" Runtimes:")]
    assert s_lines == d_lines
    started = time.monotonic()
    ok(skiff("version"))
    print(f"skiff version took {(time.monotonic() - started) * 1000:.0f} ms (with subprocess)")


def test_run_rm_exit_codes_and_streams(skiff: Runner, docker: Runner) -> None:
    for args in (
        ["sh", "-c", "echo out; echo err >&2; exit 3"],
        ["true"],
        ["nope-not-a-command"],
        ["/etc/passwd"],
    ):
        s = skiff("run", "--rm", "busybox", *args)
        d = docker("run", "--rm", "busybox", *args)
        assert s.returncode == d.returncode, (args, s.stderr, d.stderr)
        assert s.stdout == d.stdout
    s = skiff("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (s.stdout, s.stderr) == ("out\n", "err\n")
    assert skiff("run", "--bogus-flag", "busybox").returncode == 125
    r = skiff("run", "--rm", "--pull", "never", "nosuchimage:x", "true")
    assert r.returncode == docker("run", "--rm", "--pull", "never", "nosuchimage:x").returncode
    assert "Error response from daemon" in r.stderr
    # env, workdir, user, entrypoint, labels reach the container
    out = ok(skiff("run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "65534", "--entrypoint", "sh",
                   "busybox", "-c", 'echo "$A $(pwd) $(id -u)"'))  # fmt: skip
    assert out == "1 /tmp 65534\n"
    # stdin through -i
    assert ok(skiff("run", "--rm", "-i", "busybox", "cat", input="piped\n")) == "piped\n"
    # --rm leaves nothing behind
    assert ok(skiff("ps", "-aq", "--filter", "status=exited", "--filter", "ancestor=none")) == ""


def test_run_create_options(skiff: Runner, tmp_path: Path) -> None:
    n = name()
    env_file = tmp_path / "env"
    env_file.write_text("FROM_FILE=yes\n# comment\n")
    ok(skiff("create", "--name", n, "--env-file", str(env_file), "-l", "k=v", "--memory", "64m",
             "--cpus", "0.5", "--pids-limit", "50", "--cap-drop", "NET_RAW", "--read-only",
             "--restart", "on-failure:2", "--init", "--health-cmd", "true", "--stop-signal",
             "SIGUSR1", "-v", f"{tmp_path}:/data:ro", "--network", "none", "busybox", "true"))  # fmt: skip
    try:
        fmt = ("{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} "
               "{{.HostConfig.CapDrop}} {{.HostConfig.ReadonlyRootfs}} {{.HostConfig.RestartPolicy.Name}}:"
               "{{.HostConfig.RestartPolicy.MaximumRetryCount}} {{.HostConfig.Init}} "
               "{{index .Config.Labels \"k\"}} {{.Config.StopSignal}} {{json .Config.Healthcheck.Test}} "
               "{{.HostConfig.NetworkMode}} {{range .Config.Env}}{{.}};{{end}}")  # fmt: skip
        out = ok(skiff("inspect", "--format", fmt, n)).strip()
        assert out.startswith(
            '67108864 500000000 50 [NET_RAW] true on-failure:2 true v SIGUSR1 ["CMD-SHELL","true"] none '
        ), out
        assert "FROM_FILE=yes;" in out
        assert (
            ok(
                skiff(
                    "inspect", "-f", "{{(index .Mounts 0).Destination}} {{(index .Mounts 0).RW}}", n
                )
            )
            == "/data false\n"
        )
    finally:
        skiff("rm", "-f", n)


def test_detached_ps_inspect_match_docker(skiff: Runner, docker: Runner) -> None:
    n = name()
    cid = ok(skiff("run", "-d", "--name", n, "-l", "a=b", "busybox", "sleep", "300")).strip()
    try:
        assert len(cid) == 64
        for fmt in (
            "{{.ID}} {{.Names}} {{.Image}} {{.Command}} {{.State}} {{.Labels}}",
            "table {{.ID}}\t{{.Names}}\t{{.Command}}",
            "{{json .Names}}",
        ):
            args = ["ps", "-a", "--filter", f"name={n}", "--format", fmt]
            assert ok(skiff(*args)) == ok(docker(*args))
        assert ok(skiff("ps", "-q", "--filter", f"name={n}")) == cid[:12] + "\n"
        assert ok(skiff("ps", "--no-trunc", "-q", "--filter", f"name={n}")) == cid + "\n"
        assert ok(skiff("ps", "-l", "--format", "{{.Names}}")) == f"{n}\n"
        default = ok(skiff("ps", "--filter", f"name={n}")).splitlines()
        assert default[0].split() == [
            "CONTAINER",
            "ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ]
        assert default[1].startswith(cid[:12] + '   busybox   "sleep 300"')
        for fmt in (
            "{{.State.Status}}",
            "{{.NetworkSettings.IPAddress}}",
            "{{json .Config}}",
            "{{range .Config.Cmd}}[{{.}}]{{end}}",
            '{{index .Config.Labels "a"}}',
            "{{.Name}} {{.State.Running}} {{.Config.Labels}} {{len .Config.Cmd}}",
            "{{if .State.Running}}up{{else}}down{{end}}",
        ):
            assert ok(skiff("inspect", "--format", fmt, n)) == ok(
                docker("inspect", "--format", fmt, n)
            ), fmt
        import json

        assert json.loads(ok(skiff("inspect", n)))[0]["Id"] == cid
        assert json.loads(ok(skiff("container", "inspect", n)))[0]["Name"] == f"/{n}"
        s, d = skiff("inspect", "no-such-thing"), docker("inspect", "no-such-thing")
        assert (s.returncode, s.stdout.strip()) == (d.returncode, d.stdout.strip()) == (1, "[]")
        assert "No such object: no-such-thing" in s.stderr
    finally:
        skiff("rm", "-f", n)


def test_inspect_json_matches_docker(skiff: Runner, docker: Runner) -> None:
    # the docker CLI decodes inspect answers into Go structs before a template sees them:
    # {{json}} has the struct's field order, zero values, no omitempty-empty fields
    # (one mount only: dockerd lists several in Go's random map order)
    n, vol = name(), name()
    ok(skiff("volume", "create", "--label", "z=1", "--label", "a=2", vol))
    ok(skiff("run", "-d", "--name", n, "-l", "z=1", "-l", "a=2", "-e", "B=1", "-e", "A=2",
             "-v", f"{vol}:/data", "--tmpfs", "/t", "-w", "/tmp",
             "--restart", "on-failure:3", "--memory", "64m", "--cap-add", "NET_ADMIN",
             "--stop-signal", "SIGINT", "--stop-timeout", "5", "--health-cmd", "true",
             "--health-interval", "1h", "--network", "none", "busybox", "sleep", "300"))  # fmt: skip
    try:
        for fmt in ("{{json .}}", "{{json .Config}}", "{{json .HostConfig}}", "{{json .State}}",
                    "{{json .NetworkSettings}}", "{{json .Mounts}}", "{{json .GraphDriver}}",
                    "{{.HostConfig.RestartPolicy}}", "{{json .Config.Labels}}", "json"):  # fmt: skip
            assert ok(skiff("inspect", "--format", fmt, n)) == ok(
                docker("inspect", "--format", fmt, n)
            ), fmt
        # the ls rows too: a network's Created printed as Go's time.Time, IPv4
        # (not volume ls: the docker CLI joins a volume's labels in Go's random map order)
        args = ["network", "ls", "--format", "json"]
        assert ok(skiff(*args)) == ok(docker(*args)), args
        for kind, obj in (("image", "busybox"), ("volume", vol), ("network", "none"),
                          ("network", "host")):  # fmt: skip
            for fmt in ("{{json .}}", "json", "{{.Name}}" if kind != "image" else "{{.Os}}", ""):
                args = [kind, "inspect", "--format", fmt, obj] if fmt else [kind, "inspect", obj]
                assert ok(skiff(*args)) == ok(docker(*args)), args
    finally:
        skiff("rm", "-f", n)
        skiff("volume", "rm", vol)


def test_template_errors_match_docker(skiff: Runner, docker: Runner) -> None:
    # the docker CLI's words, positions and exit codes for templates that fail, the order
    # of its output when some names are missing, and other usage errors
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:
        for args in (
            ["inspect", "-f", "x {{.State.Nope}}", n],
            ["inspect", "-f", "{{.Name}} {{.Config.Nope.X}}", n],
            ["inspect", "-f", "{{index .Config.Cmd 5}}", n],
            ["inspect", "-f", "{{.Name}", n],
            ["inspect", "-f", "{{nope .Name}}", n],
            ["inspect", "-f", "{{.Name}}", n, "no-such-thing"],
            ["inspect", n, "no-such-thing"],
            ["volume", "inspect", "-f", "{{.Nope}}", "no-such-volume"],
            ["ps", "--format", "{{.Nope}}"],
            ["ps", "--format", "{{nope}}"],
            ["images", "--format", "{{.Nope}}"],
            ["history", "--format", '{{.Label "a"}}', "busybox"],
            ["logs", "--since", "nope", n],
            ["logs", "--until", "2x", "no-such-thing"],
            ["events", "--since", "1h", "--until", "2x"],
            ["rename", n, n],
            ["rename", "no-such-thing", "x"],
            ["restart", "-t", "0", "no-such-thing", n, "no-such-2"],
        ):
            s, d = skiff(*args), docker(*args)
            assert (s.returncode, s.stdout, s.stderr) == (d.returncode, d.stdout, d.stderr), args
    finally:
        skiff("rm", "-f", n)


def test_start_attach_a_stopped_container(skiff: Runner, docker: Runner) -> None:
    # `start -a` attaches before it starts: the daemon takes an attach to an exited
    # container as to a created one
    n = name()
    ok(skiff("create", "--name", n, "busybox", "sh", "-c", "echo hi; echo err >&2; exit 3"))
    try:
        for run in (skiff, docker, skiff, docker):
            r = run("start", "-a", n)
            assert (r.returncode, r.stdout, r.stderr) == (3, "hi\n", "err\n")
        s, d = skiff("attach", n), docker("attach", n)
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr) == (1, s.stderr)
    finally:
        skiff("rm", "-f", n)


def test_parallel_execs(skiff: Runner, docker: Runner) -> None:
    # 30 execs at once on one container, half through each CLI, with stdin and exit codes:
    # create, start, exit and inspect of one must never lose track of another
    from concurrent.futures import ThreadPoolExecutor

    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:

        def one(i: int) -> tuple[int, str]:
            run = docker if i % 2 else skiff
            r = run("exec", "-i", n, "sh", "-c", f"cat; echo out-{i}; exit {i % 7}",
                    input=f"in-{i}\n", timeout=120)  # fmt: skip
            return r.returncode, r.stdout + r.stderr

        with ThreadPoolExecutor(30) as pool:
            results = list(pool.map(one, range(30)))
        for i, (code, out) in enumerate(results):
            assert (code, out) == (i % 7, f"in-{i}\nout-{i}\n"), i
    finally:
        skiff("rm", "-f", n)


def test_execs_racing_restarts(skiff: Runner, docker: Runner) -> None:
    # a container that a restart policy keeps replacing: an exec whose task goes away
    # between its create and its start fails as "not running", never with the shim's
    # "exec ... not found" or a runtime's error from a dying container
    import os
    import re
    from concurrent.futures import ThreadPoolExecutor

    if os.environ.get("SKIFF_E2E_DAEMON") != "skiffd":
        pytest.skip("dockerd words these races as OCI runtime errors: a skiffd behaviour")
    n = name()
    ok(skiff("run", "-d", "--name", n, "--restart", "always", "busybox", "sleep", "0.3"))
    try:

        def one(i: int) -> tuple[int, str]:
            time.sleep(i * 0.03)
            r = docker("exec", n, "sleep", "0.5", timeout=120)
            return r.returncode, re.sub("[0-9a-f]{64}", "ID", r.stdout + r.stderr)

        with ThreadPoolExecutor(30) as pool:
            outcomes = set(pool.map(one, range(30)))
        # refused at create (exit 1), or in the stream once started (126, as a command that
        # could not be invoked), or killed with the container it ran in (137)
        assert outcomes <= {
            (0, ""),
            (1, "Error response from daemon: Container ID is not running\n"),
            (126, "Container ID is not running\n"),
            (137, ""),
        }, outcomes
    finally:
        skiff("rm", "-f", n)


def test_logs(skiff: Runner, docker: Runner) -> None:
    n = name()
    ok(skiff("run", "--name", n, "busybox", "sh", "-c", "echo one; echo two >&2; echo three"))
    try:
        for args in ([], ["--tail", "1"], ["-n", "2"]):
            s, d = skiff("logs", *args, n), docker("logs", *args, n)
            assert (s.stdout, s.stderr) == (d.stdout, d.stderr), args
        assert ok(skiff("logs", n)) == "one\nthree\n"
        stamped = ok(skiff("logs", "-t", n)).splitlines()
        assert stamped[0].endswith("Z one") and stamped[0][:4].isdigit()
        assert ok(skiff("logs", "--since", "0", "--until", "1", n)) == ""
    finally:
        skiff("rm", "-f", n)


def test_logs_follow(skiff: Runner, daemon: object, config_dir: Path) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sh", "-c",
             "for i in 1 2 3; do echo line$i; sleep 0.4; done"))  # fmt: skip
    try:
        env = daemon.env(config_dir)  # type: ignore[attr-defined]
        proc = subprocess.Popen(
            [SKIFF, "logs", "-f", n], stdout=subprocess.PIPE, text=True, env=env
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first == "line1\n"
        # -f returns only when the container has exited, with everything printed
        rest = proc.stdout.read()
        assert proc.wait(timeout=20) == 0
        assert rest == "line2\nline3\n"
    finally:
        skiff("rm", "-f", n)


def test_exec(skiff: Runner, docker: Runner) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:
        assert ok(skiff("exec", n, "echo", "hi")) == "hi\n"
        assert ok(skiff("exec", "-e", "X=y", "-w", "/etc", "-u", "nobody", n, "sh", "-c",
                        'echo "$X $(pwd) $(id -un)"')) == "y /etc nobody\n"  # fmt: skip
        assert ok(skiff("exec", "-i", n, "cat", input="in\n")) == "in\n"
        for cmd in (["sh", "-c", "exit 5"], ["nope-cmd"], ["/etc/passwd"]):
            s, d = skiff("exec", n, *cmd), docker("exec", n, *cmd)
            assert s.returncode == d.returncode, (cmd, s.stderr, d.stderr)
        r = skiff("exec", n, "sh", "-c", "echo e >&2")
        assert (r.stdout, r.stderr) == ("", "e\n")
        assert ok(skiff("exec", "-d", n, "touch", "/tmp/from-detached")) == ""
        deadline = time.monotonic() + 5
        while skiff("exec", n, "test", "-e", "/tmp/from-detached").returncode != 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = skiff("exec", "no-such-container", "true")
        assert r.returncode == docker("exec", "no-such-container", "true").returncode
        assert "Error response from daemon: No such container" in r.stderr
    finally:
        skiff("rm", "-f", n)


def test_attach_non_tty(skiff: Runner) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sh", "-c", "sleep 1; echo late; exit 4"))
    try:
        r = skiff("attach", n, timeout=20)
        assert (r.returncode, r.stdout) == (4, "late\n")
        r = skiff("attach", n)
        assert r.returncode == 1 and "cannot attach to a stopped container" in r.stderr
    finally:
        skiff("rm", "-f", n)


def test_cp_both_ways(
    skiff: Runner, docker: Runner, daemon: Daemon, config_dir: Path, tmp_path: Path
) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:
        src = tmp_path / "hello.txt"
        src.write_text("hello from the host\n")
        ok(skiff("cp", str(src), f"{n}:/tmp/"))
        assert ok(skiff("exec", n, "cat", "/tmp/hello.txt")) == "hello from the host\n"
        ok(skiff("cp", str(src), f"{n}:/tmp/renamed.txt"))
        assert ok(skiff("exec", n, "cat", "/tmp/renamed.txt")) == "hello from the host\n"
        d = tmp_path / "dir"
        (d / "sub").mkdir(parents=True)
        (d / "sub" / "f").write_text("nested")
        ok(skiff("cp", str(d), f"{n}:/tmp/"))
        assert ok(skiff("exec", n, "cat", "/tmp/dir/sub/f")) == "nested"
        out = tmp_path / "out"
        out.mkdir()
        ok(skiff("cp", f"{n}:/etc/hostname", str(out)))
        assert (out / "hostname").read_text().strip() == n[:12] or (
            out / "hostname"
        ).stat().st_size > 0
        ok(skiff("cp", f"{n}:/tmp/dir", str(out / "copied")))
        assert (out / "copied" / "sub" / "f").read_text() == "nested"
        ok(skiff("cp", f"{n}:/tmp/dir", str(out)))
        assert (out / "dir" / "sub" / "f").read_text() == "nested"
        tar_listing = subprocess.run(["tar", "-t"], input=skiff_bytes(daemon, config_dir, "cp", f"{n}:/tmp/hello.txt", "-"),
                                     capture_output=True, check=True).stdout  # fmt: skip
        assert tar_listing == b"hello.txt\n"
        s, d = (
            skiff("cp", f"{n}:/no/such/file", str(out)),
            docker("cp", f"{n}:/no/such/file", str(out)),
        )
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr)
    finally:
        skiff("rm", "-f", n)


def test_stop_kill_restart_rm(skiff: Runner, docker: Runner) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:
        assert ok(skiff("stop", "-t", "1", n)) == f"{n}\n"
        assert (
            ok(skiff("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", n)) == "exited 137\n"
        )
        assert ok(skiff("restart", "-t", "1", n)) == f"{n}\n"
        assert ok(skiff("inspect", "-f", "{{.State.Status}}", n)) == "running\n"
        ok(skiff("pause", n))
        assert ok(skiff("inspect", "-f", "{{.State.Status}}", n)) == "paused\n"
        ok(skiff("unpause", n))
        ok(skiff("update", "--pids-limit", "40", "--restart", "unless-stopped", n))
        assert (
            ok(
                skiff(
                    "inspect",
                    "-f",
                    "{{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}",
                    n,
                )
            )
            == "40 unless-stopped\n"
        )
        assert ok(skiff("kill", "-s", "KILL", n)) == f"{n}\n"
        assert ok(skiff("wait", n)) == "137\n"
        ok(skiff("rename", n, n + "x"))
        ok(skiff("start", n + "x"))
        r = skiff("rm", n + "x")
        assert r.returncode == docker("rm", n + "x").returncode == 1
        assert r.stderr.startswith("Error response from daemon:")
        assert ok(skiff("rm", "-f", n + "x")) == f"{n}x\n"
        for cmd in (["stop", "nope"], ["kill", "nope"], ["rm", "nope"], ["start", "nope"]):
            s, d = skiff(*cmd), docker(*cmd)
            assert (s.returncode, s.stderr) == (d.returncode, d.stderr), cmd
    finally:
        skiff("rm", "-f", n, n + "x")


def test_top_stats_port_diff(skiff: Runner) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sh", "-c", "touch /made; sleep 300"))
    try:
        top = ok(skiff("top", n)).splitlines()
        assert top[0].split()[:3] == ["UID", "PID", "PPID"]
        assert any("sleep 300" in line for line in top[1:])
        stats = ok(skiff("stats", "--no-stream", n)).splitlines()
        assert stats[0].split()[:4] == ["CONTAINER", "ID", "NAME", "CPU"]
        assert stats[1].split()[1] == n
        assert ok(skiff("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", n)) == f"{n} 1\n"
        deadline = time.monotonic() + 5
        while "A /made" not in (diff := ok(skiff("diff", n))):
            assert time.monotonic() < deadline, diff
            time.sleep(0.1)
        assert ok(skiff("port", n)) == ""
    finally:
        skiff("rm", "-f", n)


def test_stats_live(skiff: Runner, daemon: object, config_dir: Path) -> None:
    n = name()
    ok(skiff("run", "-d", "--name", n, "busybox", "sleep", "300"))
    try:
        env = daemon.env(config_dir)  # type: ignore[attr-defined]
        proc = subprocess.Popen([SKIFF, "stats", n], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        proc.terminate()
        proc.wait(timeout=10)
        assert lines[0].startswith("CONTAINER ID") and n in lines[1]
        assert lines[2].startswith("CONTAINER ID"), "redrawn every second"
    finally:
        skiff("rm", "-f", n)


def test_events_while_container_runs(skiff: Runner, daemon: object, config_dir: Path) -> None:
    n = name()
    env = daemon.env(config_dir)  # type: ignore[attr-defined]
    proc = subprocess.Popen([SKIFF, "events", "--filter", f"container={n}", "--format",
                             "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"],
                            stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        time.sleep(0.5)
        ok(skiff("run", "--rm", "--name", n, "busybox", "true"))
        assert proc.stdout is not None
        seen = []
        while "container destroy" not in " ".join(seen):
            seen.append(proc.stdout.readline().strip())
        assert seen[:2] == [f"container create {n}", f"container attach {n}"]
        assert f"container start {n}" in seen and f"container die {n}" in seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    lines = ok(
        skiff("events", "--since", "60s", "--until", "0s", "--filter", f"container={n}")
    ).splitlines()
    assert any(" container start " in line and f"name={n}" in line for line in lines)


def test_volumes_system_df_info(skiff: Runner, docker: Runner) -> None:
    v = name()
    assert ok(skiff("volume", "create", "--label", "x=y", v)) == f"{v}\n"
    try:
        assert ok(skiff("volume", "ls", "--filter", f"name={v}")) == ok(
            docker("volume", "ls", "--filter", f"name={v}")
        )
        assert ok(skiff("volume", "ls", "-q", "--filter", f"name={v}")) == f"{v}\n"
        assert ok(skiff("volume", "inspect", "-f", "{{.Driver}} {{.Labels.x}}", v)) == "local y\n"
        out = ok(
            skiff("run", "--rm", "-v", f"{v}:/vol", "busybox", "sh", "-c", "echo kept > /vol/f")
        )
        assert out == ""
        assert (
            ok(
                skiff(
                    "run",
                    "--rm",
                    "--mount",
                    f"type=volume,source={v},target=/v",
                    "busybox",
                    "cat",
                    "/v/f",
                )
            )
            == "kept\n"
        )
        assert ok(skiff("system", "df")).splitlines()[0].split() == [
            "TYPE",
            "TOTAL",
            "ACTIVE",
            "SIZE",
            "RECLAIMABLE",
        ]
        assert ok(skiff("system", "df")) == ok(docker("system", "df"))
        assert ok(skiff("network", "ls")) == ok(docker("network", "ls"))
        assert ok(skiff("network", "inspect", "-f", "{{.Driver}}", "none")) == "null\n"
    finally:
        assert ok(skiff("volume", "rm", v)) == f"{v}\n"
    r = skiff("volume", "rm", v)
    assert r.returncode == 1 and "Error response from daemon" in r.stderr


def test_daemon_not_running(config_dir: Path) -> None:
    env = {"DOCKER_HOST": "unix:///nonexistent/skiff.sock", "SKIFF_CONFIG": str(config_dir),
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    for args, status in ((["ps"], 1), (["run", "--rm", "busybox"], 125)):
        r = subprocess.run([SKIFF, *args], env=env, capture_output=True, text=True, timeout=20)
        assert r.returncode == status
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1, r.stderr
        assert "unix:///nonexistent/skiff.sock" in lines[0] and "skiffd" in lines[0]


def test_create_then_start_attached(skiff: Runner, docker: Runner) -> None:
    n = name()
    cid = ok(skiff("create", "-i", "--name", n, "busybox", "sh", "-c", "cat; exit 9")).strip()
    try:
        assert len(cid) == 64
        r = skiff("start", "-ai", n, input="through start\n")
        assert (r.returncode, r.stdout) == (9, "through start\n"), r.stderr
        ok(skiff("rm", n))
        ok(skiff("create", "--name", n, "busybox", "sh", "-c", "echo started; exit 2"))
        r = skiff("start", "-a", n)
        assert (r.returncode, r.stdout) == (2, "started\n")
        s, d = skiff("create", "--name", n, "busybox"), docker("create", "--name", n, "busybox")
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr)
        assert "already in use" in s.stderr
    finally:
        skiff("rm", "-f", n)
