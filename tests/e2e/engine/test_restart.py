"""Live restore: skiffd is killed with SIGKILL while containers run; a new skiffd
finds every container with its state, logs and exit status."""

from __future__ import annotations

import json
import time

from engine_daemons import Engine


def test_sigkill_skiffd_and_restart(own_engine: Engine) -> None:
    eng = own_engine
    eng.docker(
        "run",
        "-d",
        "--name",
        "ticker",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    )
    eng.docker(
        "run", "-d", "--name", "quitter", "busybox", "sh", "-c", "sleep 2; echo last words; exit 9"
    )
    eng.docker("create", "--name", "idle", "busybox", "true")
    eng.docker("run", "--name", "done", "busybox", "sh", "-c", "echo finished; exit 4", check=False)
    pids = {
        n: json.loads(eng.docker("inspect", n).stdout)[0]["State"]["Pid"]
        for n in ("ticker", "quitter")
    }
    time.sleep(0.5)
    eng.kill_skiffd()
    time.sleep(2.5)  # quitter exits while nobody is watching
    eng.start_skiffd()
    states = {}
    for line in eng.docker("ps", "-a", "--format", "{{.Names}} {{.State}}").stdout.splitlines():
        n, st = line.split()
        states[n] = st
    assert states == {"ticker": "running", "quitter": "exited", "idle": "created", "done": "exited"}
    assert eng.docker("wait", "quitter").stdout.strip() == "9"
    # what it wrote while skiffd was down, just before it exited, is not lost
    assert eng.docker("logs", "quitter").stdout == "last words\n"
    assert eng.docker("inspect", "-f", "{{.State.ExitCode}}", "done").stdout.strip() == "4"
    assert eng.docker("logs", "done").stdout == "finished\n"
    # the ticker never stopped: same pid, and its log goes on without a hole
    assert json.loads(eng.docker("inspect", "ticker").stdout)[0]["State"]["Pid"] == pids["ticker"]
    time.sleep(0.5)
    ticks = [int(x.split()[1]) for x in eng.docker("logs", "ticker").stdout.splitlines()]
    assert ticks == list(range(len(ticks))) and len(ticks) > 25
    assert eng.docker("exec", "ticker", "echo", "alive").stdout == "alive\n"
    eng.docker("stop", "-t", "1", "ticker")
    assert eng.docker("inspect", "-f", "{{.State.Status}}", "ticker").stdout.strip() == "exited"
    eng.docker("rm", "-f", "ticker", "quitter", "idle", "done")
