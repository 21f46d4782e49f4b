"""skiffd answers the docker CLI as dockerd does where the CLI scenarios found it differ."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import subprocess
import time
import uuid

from engine_daemons import Engine


def name() -> str:
    return "p" + uuid.uuid4().hex[:10]


def test_run_of_a_missing_command_fails_with_127(engine: Engine) -> None:
    n = name()
    try:
        res = engine.docker("run", "--name", n, "busybox", "nope", check=False, timeout=30)
        assert res.returncode == 127, res
        assert 'exec: "nope": executable file not found in $PATH' in res.stderr, res.stderr
        st = json.loads(engine.docker("inspect", n).stdout)[0]["State"]
        assert st["Status"] == "created" and st["ExitCode"] == 127, st
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_run_rm_of_a_missing_command_fails_and_removes(engine: Engine) -> None:
    n = name()
    res = engine.docker("run", "--rm", "--name", n, "busybox", "nope", check=False, timeout=30)
    assert res.returncode == 127, res
    assert "executable file not found" in res.stderr


def test_wait_started_before_kill_returns_137(engine: Engine) -> None:
    n = name()
    engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        waiter = subprocess.Popen(
            ["docker", "wait", n], env=engine.env, stdout=subprocess.PIPE, text=True
        )
        try:
            time.sleep(0.5)
            engine.docker("kill", n)
            out, _ = waiter.communicate(timeout=15)
            assert out.strip() == "137"
        finally:
            waiter.kill()
            waiter.wait()
        assert engine.docker("wait", n, timeout=15).stdout.strip() == "137"
    finally:
        engine.docker("rm", "-f", n, check=False)


def in_pty(engine: Engine, *args: str, timeout: float = 20) -> tuple[int, bytes]:
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe("docker", ["docker", *args], engine.env)
    out = b""
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""
                if not data:
                    break
                out += data
        _, status = os.waitpid(pid, 0 if time.monotonic() < end else os.WNOHANG)
        if status == 0 and time.monotonic() >= end:
            raise AssertionError(f"docker {' '.join(args)} hangs: {out!r}")
        return os.waitstatus_to_exitcode(status), out
    finally:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)


def test_run_it_of_a_missing_command_fails_with_127(engine: Engine) -> None:
    code, out = in_pty(engine, "run", "--rm", "-it", "busybox", "nope")
    assert code == 127 and b"executable file not found" in out, out


def test_wait_after_kill_of_a_restarted_unless_stopped_container(engine: Engine) -> None:
    n = name()
    engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
    try:
        engine.docker("stop", "-t", "1", n)
        engine.docker("restart", "-t", "1", n)
        engine.docker("pause", n)
        engine.docker("unpause", n)
        engine.docker("update", "--pids-limit", "40", "--restart", "unless-stopped", n)
        engine.docker("kill", "-s", "KILL", n)
        assert engine.docker("wait", n, timeout=15).stdout.strip() == "137"
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_run_emits_attach_before_start(engine: Engine) -> None:
    n = name()
    since = str(int(time.time()) - 1)
    try:
        assert engine.docker("run", "--name", n, "busybox", "echo", "hi").stdout == "hi\n"
        until = str(int(time.time()) + 1)
        actions = engine.docker(
            "events", "--since", since, "--until", until, "--filter", f"container={n}",
            "--format", "{{.Action}}",
        ).stdout.split()  # fmt: skip
        assert "attach" in actions and "start" in actions, actions
        assert actions.index("attach") < actions.index("start"), actions
    finally:
        engine.docker("rm", "-f", n, check=False)


class Term:
    def __init__(self, engine: Engine, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execvpe("docker", ["docker", *args], engine.env)
        self.buf = b""

    def expect(self, token: bytes, timeout: float = 15) -> None:
        end = time.monotonic() + timeout
        while token not in self.buf:
            assert time.monotonic() < end, f"{token!r} not seen in {self.buf[-300:]!r}"
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                with contextlib.suppress(OSError):
                    self.buf += os.read(self.fd, 4096)

    def wait(self, timeout: float = 15) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with contextlib.suppress(OSError):
                select.select([self.fd], [], [], 0.1) and os.read(self.fd, 4096)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.pid = 0
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"docker did not exit: {self.buf[-300:]!r}")

    def close(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                os.kill(self.pid, 9)
                os.waitpid(self.pid, 0)
        os.close(self.fd)


def test_attach_again_to_a_tty_container_after_a_detach(engine: Engine) -> None:
    n = name()
    try:
        t = Term(engine, "run", "-it", "--name", n, "busybox", "sh")
        try:
            t.expect(b"# ")
            os.write(t.fd, b"echo one-$((1+1))\r")
            t.expect(b"one-2")
            os.write(t.fd, b"\x10\x11")  # ctrl-p ctrl-q
            assert t.wait() == 0
        finally:
            t.close()
        assert engine.docker("inspect", "-f", "{{.State.Running}}", n).stdout == "true\n"
        t = Term(engine, "attach", n)
        try:
            time.sleep(0.5)
            os.write(t.fd, b"echo back-$((2+3))\r")
            t.expect(b"back-5")
            os.write(t.fd, b"exit 7\r")
            assert t.wait() == 7
        finally:
            t.close()
    finally:
        engine.docker("rm", "-f", n, check=False)
