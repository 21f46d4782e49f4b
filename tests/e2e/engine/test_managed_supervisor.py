"""skiffd over the skiff-containerd it manages: containers run, and when skiffd is
killed its supervisor goes with it while the containers stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

from engine_daemons import Engine


def supervisor_pid(eng: Engine) -> int:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"skiff-containerd") for a in cmd[:2]) and str(
            eng.base
        ).encode() in b" ".join(cmd):
            return int(entry.name)
    return 0


def test_containers_over_skiff_containerd_survive_skiffd(managed_engine: Engine) -> None:
    eng = managed_engine
    assert eng.docker("run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    eng.docker(
        "run",
        "-d",
        "--name",
        "stay",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done",
    )
    assert eng.docker("exec", "stay", "echo", "ok").stdout == "ok\n"
    pid = int(eng.docker("inspect", "-f", "{{.State.Pid}}", "stay").stdout)
    sup = supervisor_pid(eng)
    assert sup, "no managed skiff-containerd found"
    eng.kill_skiffd()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{sup}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{sup}"), "the managed supervisor outlived skiffd"
    assert os.path.exists(f"/proc/{pid}"), "the container died with skiffd"
    eng.start_skiffd()
    assert eng.docker(
        "inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "stay"
    ).stdout.split() == ["running", str(pid)]
    eng.docker("rm", "-f", "stay")


def test_supervisor_killed_and_restarted_under_skiffd(managed_engine: Engine) -> None:
    eng = managed_engine
    eng.docker("run", "-d", "--name", "outlive", "busybox", "sh", "-c", "sleep 3; exit 5")
    sup = supervisor_pid(eng)
    os.kill(sup, 9)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        new = supervisor_pid(eng)
        if new and new != sup:
            break
        time.sleep(0.1)
    assert supervisor_pid(eng) not in (0, sup), "skiffd did not restart its supervisor"
    # the exit that happens after the reconnect still reaches skiffd
    assert eng.docker("wait", "outlive", timeout=30).stdout.strip() == "5"
    assert eng.docker("run", "--rm", "busybox", "echo", "again", timeout=30).stdout == "again\n"
    eng.docker("rm", "-f", "outlive")
