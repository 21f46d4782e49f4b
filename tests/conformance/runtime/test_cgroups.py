"""Resources: cgroup limits read back inside the container and on the host, limits
in effect, pause/resume (freezer), events --stats, update.

Runtime CLI boundary of DESIGN.md. Written for cgroup v1 controllers (this
machine is hybrid); on a pure cgroup v2 host these tests skip.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from runtime_harness import Bundle, Runtime, container_cgroup, v1_controller, wait_for

pytestmark = pytest.mark.root

MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def _needs_v1() -> None:
    missing = [c for c in ("memory", "pids", "cpu", "cpuset", "freezer") if not v1_controller(c)]
    if missing:
        pytest.skip(f"cgroup v1 controllers missing on this host: {missing}")


def test_limits_seen_inside(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"].update(
        {
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB},
            "pids": {"limit": 42},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        }
    )
    bundle.shell(
        "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes"
        " pids/pids.max cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us"
        " cpuset/cpuset.cpus cpuset/cpuset.mems"
    )
    out = runtime.run_ok(bundle).split()
    assert out == [str(64 * MiB), str(32 * MiB), "42", "512", "50000", "100000", "0", "0"]


def test_limits_on_host_cgroup(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"].update(
        {"memory": {"limit": 96 * MiB}, "pids": {"limit": 17}, "cpu": {"shares": 256}}
    )
    pid = runtime.start_running(bundle)
    assert (container_cgroup(pid, "memory") / "memory.limit_in_bytes").read_text().strip() == str(
        96 * MiB
    )
    assert (container_cgroup(pid, "pids") / "pids.max").read_text().strip() == "17"
    assert (container_cgroup(pid, "cpu") / "cpu.shares").read_text().strip() == "256"
    procs = (container_cgroup(pid, "pids") / "cgroup.procs").read_text().split()
    assert str(pid) in procs
    # The cgroups path of the config is honoured (relative: under the caller's cgroup).
    assert container_cgroup(pid, "pids").name == bundle.linux["cgroupsPath"]


def test_pids_limit_in_effect(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"]["pids"] = {"limit": 5}
    # The background sleeps die with init (the pid namespace goes with it).
    bundle.shell("for i in 1 2 3 4 5 6 7 8; do sleep 5 >/dev/null & done 2>&1; echo done")
    res = runtime.run(bundle)
    assert "can't fork" in res.stdout or "Resource temporarily unavailable" in res.stdout, res


def test_memory_limit_in_effect(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"]["memory"] = {"limit": 16 * MiB, "swap": 16 * MiB}
    # dd allocates its whole block: 64 MiB cannot fit under a 16 MiB limit.
    bundle.shell("dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo rc=$?")
    out = runtime.run_ok(bundle)
    assert "rc=137" in out, out


def test_cgroup_removed_on_delete(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle)
    dirs = [container_cgroup(pid, c) for c in ("memory", "pids", "cpu", "freezer")]
    assert all(d.is_dir() for d in dirs)
    runtime.ok("delete", "--force", bundle.id)
    wait_for(lambda: not any(d.exists() for d in dirs), what="cgroup dirs to be removed")


def read_counter(path: Path) -> int:
    text = path.read_text().strip()
    return int(text) if text else -1


def test_pause_and_resume(runtime: Runtime, bundle: Bundle) -> None:
    out = bundle.path / "out"
    out.mkdir()
    bundle.add_mount("/out", "bind", str(out), ["rbind", "rw"])
    counter = out / "counter"
    pid = runtime.start_running(
        bundle, "i=0; while :; do i=$((i+1)); echo $i > /out/counter; sleep 0.02; done"
    )
    wait_for(lambda: counter.exists() and read_counter(counter) > 2, what="counter to run")

    runtime.ok("pause", bundle.id)
    assert runtime.state(bundle.id)["status"] == "paused"
    freezer = container_cgroup(pid, "freezer") / "freezer.state"
    assert freezer.read_text().strip() == "FROZEN"
    time.sleep(0.1)
    frozen_at = read_counter(counter)
    time.sleep(0.3)
    assert read_counter(counter) == frozen_at, "the container ran while paused"

    runtime.ok("resume", bundle.id)
    assert runtime.state(bundle.id)["status"] == "running"
    assert freezer.read_text().strip() == "THAWED"
    wait_for(lambda: read_counter(counter) > frozen_at + 2, what="counter to run again")


def test_pause_of_stopped_container_fails(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("true")
    runtime.create(bundle)
    runtime.ok("start", bundle.id)
    runtime.wait_status(bundle.id, "stopped")
    assert runtime("pause", bundle.id).returncode != 0
    assert runtime.state(bundle.id)["status"] == "stopped"


def test_resume_of_running_container_fails(runtime: Runtime, bundle: Bundle) -> None:
    runtime.start_running(bundle)
    assert runtime("resume", bundle.id).returncode != 0
    assert runtime.state(bundle.id)["status"] == "running"


def test_delete_force_of_paused_container(runtime: Runtime, bundle: Bundle) -> None:
    pid = runtime.start_running(bundle)
    runtime.ok("pause", bundle.id)
    runtime.ok("delete", "--force", bundle.id)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="paused init to die")


def test_events_stats(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"]["memory"] = {"limit": 64 * MiB}
    bundle.linux["resources"]["pids"] = {"limit": 30}
    runtime.start_running(bundle, "sleep 1000 & sleep 1000")
    res = runtime.ok("events", "--stats", bundle.id)
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, res.stdout
    event = json.loads(lines[0])
    assert event["type"] == "stats"
    assert event["id"] == bundle.id
    data = event["data"]
    assert data["pids"]["current"] == 2
    assert data["pids"]["limit"] == 30
    assert data["memory"]["usage"]["limit"] == 64 * MiB
    assert data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0


def cat_inside(runtime: Runtime, cid: str, *files: str) -> list[str]:
    res = runtime.exec(cid, "cat", *(f"/sys/fs/cgroup/{f}" for f in files))
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_update_with_flags(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"].update(
        {"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}, "cpu": {"shares": 1024}}
    )
    pid = runtime.start_running(bundle)
    files = (
        "memory/memory.limit_in_bytes",
        "pids/pids.max",
        "cpu/cpu.shares",
        "cpu/cpu.cfs_quota_us",
    )
    assert cat_inside(runtime, bundle.id, *files)[:3] == [str(64 * MiB), "20", "1024"]

    runtime.ok(
        "update",
        "--memory",
        str(128 * MiB),
        "--pids-limit",
        "33",
        "--cpu-share",
        "300",
        "--cpu-quota",
        "40000",
        "--cpu-period",
        "100000",
        bundle.id,
    )
    assert cat_inside(runtime, bundle.id, *files) == [str(128 * MiB), "33", "300", "40000"]
    assert (container_cgroup(pid, "pids") / "pids.max").read_text().strip() == "33"
    assert runtime.state(bundle.id)["status"] == "running"


def test_update_with_resources_file(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["resources"].update({"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}})
    runtime.start_running(bundle)
    resources = bundle.path / "resources.json"
    resources.write_text(
        json.dumps({"memory": {"limit": 80 * MiB}, "pids": {"limit": 44}, "cpu": {"shares": 700}})
    )
    runtime.ok("update", "-r", str(resources), bundle.id)
    files = ("memory/memory.limit_in_bytes", "pids/pids.max", "cpu/cpu.shares")
    assert cat_inside(runtime, bundle.id, *files) == [str(80 * MiB), "44", "700"]

    # `-r -` reads the resources from stdin.
    res = runtime("update", "-r", "-", bundle.id, input=json.dumps({"pids": {"limit": 55}}))
    assert res.returncode == 0, res.stderr
    assert cat_inside(runtime, bundle.id, "pids/pids.max") == ["55"]


def test_update_of_unknown_container_fails(runtime: Runtime) -> None:
    res = runtime("update", "--pids-limit", "10", "no-such-container")
    assert res.returncode != 0
    assert res.stderr.strip()
