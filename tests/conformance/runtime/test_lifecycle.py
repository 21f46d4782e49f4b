"""Lifecycle: create, start, state, kill, delete, list, run, --pid-file.

The OCI runtime CLI boundary of DESIGN.md, driven black-box; every check that can
be made from inside the container is made there.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pytest
from runtime_harness import Bundle, Runtime, cgroup_dirs_named, pid_alive, wait_for

pytestmark = pytest.mark.root


def parse_rfc3339(value: str) -> datetime:
    # Go writes nanoseconds; Python's fromisoformat takes at most microseconds.
    head, _, frac = value.partition(".")
    if frac:
        digits = "".join(ch for ch in frac if ch.isdigit())
        tz = frac[len(digits) :]
        value = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_create_leaves_init_waiting_then_start_runs_it(runtime: Runtime, bundle: Bundle) -> None:
    marker_dir = bundle.path / "marker"
    marker_dir.mkdir()
    bundle.add_mount("/marker", "bind", str(marker_dir), ["rbind", "rw"])
    bundle.shell("echo started > /marker/started; sleep 1000")
    runtime.create(bundle)

    st = runtime.state(bundle.id)
    assert st["status"] == "created"
    assert pid_alive(st["pid"])
    time.sleep(0.3)
    assert not (marker_dir / "started").exists(), "the user process ran before start"

    runtime.ok("start", bundle.id)
    wait_for(lambda: (marker_dir / "started").exists(), what="the process to start")
    assert runtime.state(bundle.id)["status"] == "running"
    # The runtime never stays behind as the container's parent.
    ppid = int(Path(f"/proc/{st['pid']}/stat").read_text().rsplit(")", 1)[1].split()[1])
    parent_exe = os.readlink(f"/proc/{ppid}/exe") if ppid > 1 else ""
    assert Path(runtime.binary).name not in parent_exe


def test_state_json_fields(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["annotations"] = {"org.example.key": "value"}
    before = datetime.now().astimezone()
    runtime.create(bundle)
    st = runtime.state(bundle.id)
    for field in ("ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"):
        assert field in st, f"state lacks {field}: {st}"
    assert st["id"] == bundle.id
    assert isinstance(st["pid"], int) and st["pid"] > 0
    assert st["status"] == "created"
    assert Path(st["bundle"]) == bundle.path
    assert Path(st["rootfs"]) == bundle.rootfs
    assert st["annotations"] == {"org.example.key": "value"}
    assert st["owner"] in ("", "root")
    created = parse_rfc3339(st["created"])
    assert abs((created - before).total_seconds()) < 30
    assert st["ociVersion"].startswith("1.")


def test_state_of_unknown_container_fails(runtime: Runtime) -> None:
    res = runtime("state", "no-such-container")
    assert res.returncode == 1
    assert res.stderr.strip()


def test_status_becomes_stopped_when_init_exits(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("true")
    runtime.create(bundle)
    runtime.ok("start", bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    res = runtime("start", bundle.id)
    assert res.returncode != 0, "start of a stopped container must fail"
    runtime.ok("delete", bundle.id)
    assert runtime("state", bundle.id).returncode != 0


def test_start_twice_fails(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    res = runtime("start", bundle.id)
    assert res.returncode != 0
    assert runtime.state(bundle.id)["status"] == "running"


@pytest.mark.parametrize("signame", ["USR1", "SIGUSR1", "10"])
def test_kill_signal_names_and_numbers(runtime: Runtime, bundle: Bundle, signame: str) -> None:
    out = bundle.path / "out"
    out.mkdir()
    bundle.add_mount("/out", "bind", str(out), ["rbind", "rw"])
    runtime.start_running(
        bundle, "trap 'echo got >> /out/sig' USR1; touch /out/ready; while :; do sleep 0.05; done"
    )
    wait_for(lambda: (out / "ready").exists(), what="trap installed")
    runtime.ok("kill", bundle.id, signame)
    wait_for(lambda: (out / "sig").exists(), what="the signal to arrive")
    assert runtime.state(bundle.id)["status"] == "running"


def test_kill_default_signal_is_term(runtime: Runtime, bundle: Bundle) -> None:
    out = bundle.path / "out"
    out.mkdir()
    bundle.add_mount("/out", "bind", str(out), ["rbind", "rw"])
    runtime.start_running(
        bundle,
        "trap 'echo term > /out/sig; exit 0' TERM; touch /out/ready; while :; do sleep 0.05; done",
    )
    wait_for(lambda: (out / "ready").exists(), what="trap installed")
    runtime.ok("kill", bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    assert (out / "sig").read_text().strip() == "term"


@pytest.mark.parametrize("signame", ["KILL", "9"])
def test_kill_stops_container(runtime: Runtime, bundle: Bundle, signame: str) -> None:
    pid = runtime.start_running(bundle)
    runtime.ok("kill", bundle.id, signame)
    runtime.wait_status(bundle.id, "stopped")
    wait_for(lambda: not pid_alive(pid), what="init to die")


def test_kill_unknown_signal_fails(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    res = runtime("kill", bundle.id, "NOTASIGNAL")
    assert res.returncode != 0
    assert runtime.state(bundle.id)["status"] == "running"


def test_kill_all_reaches_every_process(runtime: Runtime, bundle: Bundle) -> None:
    # Without a pid namespace of its own, killing init does not take the others
    # with it, so only --all can stop every process in the container.
    bundle.drop_namespace("pid")
    out = bundle.path / "out"
    out.mkdir()
    bundle.add_mount("/out", "bind", str(out), ["rbind", "rw"])
    pid = runtime.start_running(bundle, "sleep 1001 & echo $! > /out/child; sleep 1000")
    wait_for(lambda: (out / "child").exists() and (out / "child").read_text().strip() != "")
    child = int((out / "child").read_text())
    assert pid_alive(child)
    runtime.ok("kill", "--all", bundle.id, "KILL")
    wait_for(lambda: not pid_alive(pid) and not pid_alive(child), what="every process to die")
    runtime.wait_status(bundle.id, "stopped")


def test_delete_running_needs_force(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle)
    res = runtime("delete", bundle.id)
    assert res.returncode != 0
    assert res.stderr.strip()
    assert runtime.state(bundle.id)["status"] == "running"
    assert pid_alive(pid)

    runtime.ok("delete", "--force", bundle.id)
    wait_for(lambda: not pid_alive(pid), what="init to die")
    assert runtime("state", bundle.id).returncode != 0
    assert not (runtime.root / bundle.id).exists()
    assert cgroup_dirs_named(bundle.id) == []


def test_delete_created_container(runtime: Runtime, bundle: Bundle) -> None:
    runtime.create(bundle)
    pid = runtime.state(bundle.id)["pid"]
    runtime.ok("delete", bundle.id)
    wait_for(lambda: not pid_alive(pid), what="the waiting init to go")
    assert runtime("state", bundle.id).returncode != 0
    assert cgroup_dirs_named(bundle.id) == []


def test_delete_force_of_unknown_container(runtime: Runtime) -> None:
    # runc: delete --force of a container that does not exist succeeds quietly.
    assert runtime("delete", "--force", "never-existed").returncode == 0
    assert runtime("delete", "never-existed").returncode != 0


def test_list_formats(runtime: Runtime, make_bundle) -> None:  # type: ignore[no-untyped-def]
    a, b = make_bundle(), make_bundle()
    runtime.create(a)
    runtime.start_running(b)

    table = runtime.ok("list").stdout.splitlines()
    assert table[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
    rows = {line.split()[0]: line.split() for line in table[1:]}
    assert rows[a.id][2] == "created"
    assert rows[b.id][2] == "running"
    assert rows[b.id][3] == str(b.path)

    quiet = runtime.ok("list", "-q").stdout.split()
    assert sorted(quiet) == sorted([a.id, b.id])

    items = json.loads(runtime.ok("list", "--format", "json").stdout)
    by_id = {item["id"]: item for item in items}
    assert set(by_id) == {a.id, b.id}
    assert by_id[b.id]["status"] == "running"
    assert by_id[b.id]["pid"] == runtime.state(b.id)["pid"]
    assert by_id[a.id]["bundle"] == str(a.path)


def test_list_empty(runtime: Runtime) -> None:
    assert runtime.ok("list", "-q").stdout.strip() == ""
    assert json.loads(runtime.ok("list", "--format", "json").stdout or "null") in (None, [])


def test_run_passes_exit_code_and_stdio(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("echo to-stdout; echo to-stderr >&2; exit 7")
    res = runtime.run(bundle)
    assert res.returncode == 7
    assert res.stdout == "to-stdout\n"
    assert "to-stderr" in res.stderr
    # run deletes the container once it exits.
    assert runtime("state", bundle.id).returncode != 0


def test_run_passes_stdin(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("cat")
    res = runtime.run(bundle, input="through stdin\n")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "through stdin\n"


def test_run_exit_code_of_signalled_process(runtime: Runtime, bundle: Bundle) -> None:
    # A process killed by a signal reports 128+signal, like a shell does.
    bundle.shell("kill -KILL $$; sleep 5")
    bundle.drop_namespace("pid")  # pid 1 in a pid namespace cannot be killed from inside
    res = runtime.run(bundle)
    assert res.returncode == 137, res.stderr


def test_run_detached(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("echo detached-output; sleep 1000")
    t0 = time.monotonic()
    runtime.run_detached(bundle)
    assert time.monotonic() - t0 < 10
    assert runtime.state(bundle.id)["status"] == "running"
    wait_for(lambda: "detached-output" in (bundle.path / "ct.stdout").read_text())


def test_create_pid_file(runtime: Runtime, bundle: Bundle) -> None:
    pid_file = bundle.path / "init.pid"
    runtime.create(bundle, "--pid-file", str(pid_file))
    assert int(pid_file.read_text()) == runtime.state(bundle.id)["pid"]


def test_run_detached_pid_file(runtime: Runtime, bundle: Bundle) -> None:
    pid_file = bundle.path / "init.pid"
    bundle.shell("sleep 1000")
    runtime.run_detached(bundle, "--pid-file", str(pid_file))
    assert int(pid_file.read_text()) == runtime.state(bundle.id)["pid"]


def test_init_is_pid_1(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o pid,comm")
    out = runtime.run_ok(bundle).splitlines()
    assert out[0] == "1"
    assert out[1].startswith("sh -c")
    pids = [line.split()[0] for line in out[3:]]
    assert "1" in pids
    assert len(pids) <= 3, f"processes from outside the container are visible: {out}"
