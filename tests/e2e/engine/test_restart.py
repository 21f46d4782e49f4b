"""Live restore: skiffd is killed with SIGKILL while containers run; a new skiffd
finds every container with its state, logs and exit status."""

from __future__ import annotations

import json
import subprocess
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


def _wait_logs(eng: Engine, name: str, want: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        out = eng.docker("logs", name).stdout
        if want in out:
            return out
        time.sleep(0.1)
    raise AssertionError(f"{want!r} not in the logs of {name}: {out!r}")


def _attach_and_send(eng: Engine, name: str, data: bytes) -> None:
    """`docker attach` with data then EOF on its stdin. As with dockerd, the daemon ends
    the stream at that EOF (a container without StdinOnce keeps its stdin open), while
    the CLI itself goes on waiting for the container's exit: stop it once its stream ended."""
    proc = subprocess.Popen(
        ["docker", "attach", name],
        env=eng.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdin is not None
        time.sleep(0.5)  # attached (data sent before would wait in the CLI's pipe anyway)
        proc.stdin.write(data)
        proc.stdin.close()
        _wait_logs(eng, name, data.decode().strip())
    finally:
        proc.kill()  # SIGKILL: the CLI proxies SIGTERM to the container
        proc.wait()


def test_open_stdin_survives_sigkill_of_skiffd(own_engine: Engine) -> None:
    """A non-TTY `-i` container's stdin is held by the shim, not by skiffd: a killed
    skiffd is no EOF, and the next skiffd's attach still feeds the container."""
    eng = own_engine
    script = "while read l; do echo got $l; done; echo stdin ended"
    eng.docker("run", "-d", "-i", "--name", "reader", "busybox", "sh", "-c", script)
    pid = json.loads(eng.docker("inspect", "reader").stdout)[0]["State"]["Pid"]
    # an attach before the kill feeds it too; its EOF leaves the stdin open (no StdinOnce)
    _attach_and_send(eng, "reader", b"before\n")
    _wait_logs(eng, "reader", "got before")
    eng.kill_skiffd()
    time.sleep(1)  # the container would have read EOF by now if skiffd held the writer
    eng.start_skiffd()
    assert eng.docker("inspect", "-f", "{{.State.Status}}", "reader").stdout.strip() == "running"
    assert json.loads(eng.docker("inspect", "reader").stdout)[0]["State"]["Pid"] == pid
    _attach_and_send(eng, "reader", b"hello\n")
    assert _wait_logs(eng, "reader", "got hello") == "got before\ngot hello\n"
    assert eng.docker("inspect", "-f", "{{.State.Status}}", "reader").stdout.strip() == "running"
    # exec -i with a large input still ends at its EOF, after the last byte
    data = "".join(f"line {i}\n" for i in range(20000))
    assert eng.docker("exec", "-i", "reader", "cat", input=data, timeout=60).stdout == data
    assert eng.docker("exec", "-i", "reader", "wc", "-l", input=data).stdout.strip() == "20000"
    eng.docker("rm", "-f", "reader")


def test_stdin_once_ends_at_eof_after_a_restart(own_engine: Engine) -> None:
    """`docker run -i` (StdinOnce): the client's EOF is the container's EOF, after all of
    its input, before and after a skiffd SIGKILL and restart."""
    eng = own_engine
    data = "".join(f"line {i}\n" for i in range(20000))
    for round_ in range(2):
        res = eng.docker("run", "-i", "--rm", "busybox", "cat", input=data, timeout=60)
        assert res.stdout == data
        res = eng.docker("run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo end", input="")
        assert res.stdout == "end\n"
        script = "while read l; do echo got $l; done; echo stdin ended; exit 3"
        res = eng.docker(
            "run", "-i", "--name", f"once{round_}", "busybox", "sh", "-c", script,
            input="a\nb\n", check=False, timeout=30,
        )  # fmt: skip
        assert (res.returncode, res.stdout) == (3, "got a\ngot b\nstdin ended\n"), res
        eng.docker("rm", f"once{round_}")
        if round_ == 0:
            eng.kill_skiffd()
            eng.start_skiffd()
