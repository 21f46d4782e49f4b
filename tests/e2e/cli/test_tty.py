"""`skiff run -it`, `exec -it` and `attach` in a real pseudo-terminal: typing into
a shell, a window resize seen by `stty size`, ctrl-p ctrl-q detach, attach back,
and the terminal's settings restored when skiff exits."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import termios
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_daemons import DOCKER, SKIFF, Daemon
from cli_fixtures import Runner, skiff_bytes

pytestmark = [pytest.mark.root, pytest.mark.timeout(90)]


class Terminal:
    """skiff running on the slave side of a pty that the test holds the master of."""

    def __init__(
        self, argv: list[str], env: dict[str, str], rows: int = 30, cols: int = 100
    ) -> None:
        self.master, slave = pty.openpty()
        self.resize(rows, cols)
        self.slave_path = os.ttyname(slave)
        self.saved = termios.tcgetattr(slave)
        self.pid = os.fork()
        if self.pid == 0:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.closerange(3, 1024)
            os.execve(argv[0], argv, env)
        self.slave = slave  # kept open so its settings can be read after skiff exits
        self.buf = b""

    def resize(self, rows: int, cols: int) -> None:
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def expect(self, needle: bytes, timeout: float = 15) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"{needle!r} not seen in {self.buf[-500:]!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    data = os.read(self.master, 4096)
                except OSError:
                    data = b""
                if not data:
                    assert needle in self.buf, (
                        f"{needle!r} not seen before EOF in {self.buf[-500:]!r}"
                    )
                self.buf += data
        seen, _, self.buf = self.buf.partition(needle)
        return seen + needle

    def wait(self, timeout: float = 20) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:
                while select.select([self.master], [], [], 0.05)[0] and os.read(self.master, 4096):
                    pass
            except OSError:
                pass
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        raise AssertionError("skiff did not exit")

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@contextmanager
def terminal(
    daemon: Daemon, config_dir: Path, *args: str, binary: str = SKIFF
) -> Iterator[Terminal]:
    env = daemon.env(config_dir)
    env["TERM"] = "xterm"
    t = Terminal([binary, *args], env)
    try:
        yield t
    finally:
        try:
            os.kill(t.pid, 9)
            os.waitpid(t.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        t.close()


def test_run_it_resize_detach_attach(skiff: Runner, daemon: Daemon, config_dir: Path) -> None:
    n = f"t{uuid.uuid4().hex[:10]}"
    try:
        with terminal(daemon, config_dir, "run", "-it", "--name", n, "busybox", "sh") as t:
            t.expect(b"# ")
            t.write(b"echo typed-$((40+2))\r")
            t.expect(b"typed-42")
            t.write(b"stty size\r")
            t.expect(b"30 100")
            # the kernel signals SIGWINCH to skiff, the foreground of the pty
            t.resize(40, 120)
            time.sleep(0.3)
            t.write(b"stty size\r")
            t.expect(b"40 120")
            t.write(b"\x10\x11")  # ctrl-p ctrl-q
            assert t.wait() == 0
            after = termios.tcgetattr(t.slave)
            assert after == t.saved, "the terminal is restored after a detach"
        assert skiff("inspect", "-f", "{{.State.Running}}", n).stdout == "true\n"
        with terminal(daemon, config_dir, "attach", n) as t:
            time.sleep(0.5)
            t.write(b"echo back-$((2+3))\r")
            t.expect(b"back-5")
            t.write(b"exit 7\r")
            assert t.wait() == 7
            assert termios.tcgetattr(t.slave) == t.saved
    finally:
        skiff("rm", "-f", n)


def test_run_it_exit_code_and_restore(skiff: Runner, daemon: Daemon, config_dir: Path) -> None:
    with terminal(daemon, config_dir, "run", "--rm", "-it", "busybox", "sh") as t:
        t.expect(b"# ")
        t.write(b"exit 3\r")
        assert t.wait() == 3
        assert termios.tcgetattr(t.slave) == t.saved
    with terminal(daemon, config_dir, "run", "--rm", "-it", "busybox", "nope-cmd") as t:
        assert t.wait() == 127
        assert termios.tcgetattr(t.slave) == t.saved


def test_exec_it(skiff: Runner, daemon: Daemon, config_dir: Path) -> None:
    n = f"t{uuid.uuid4().hex[:10]}"
    assert skiff("run", "-d", "--name", n, "busybox", "sleep", "300").returncode == 0
    try:
        with terminal(daemon, config_dir, "exec", "-it", n, "sh") as t:
            t.expect(b"# ")
            t.write(b"tty; stty size\r")
            t.expect(b"/dev/pts/")
            t.expect(b"30 100")
            t.resize(25, 90)
            time.sleep(0.3)
            t.write(b"stty size\r")
            t.expect(b"25 90")
            t.write(b"exit 4\r")
            assert t.wait() == 4
            assert termios.tcgetattr(t.slave) == t.saved
    finally:
        skiff("rm", "-f", n)


def test_not_a_tty_and_pull_progress_in_a_terminal(
    skiff: Runner, docker: Runner, daemon: Daemon, config_dir: Path
) -> None:
    for args in (["run", "--rm", "-it", "busybox", "true"], ["exec", "-it", "nope", "true"]):
        s, d = skiff(*args, input="x"), docker(*args, input="x")
        assert (s.returncode, s.stderr) == (d.returncode, d.stderr), args
    assert (
        skiff("run", "--rm", "-it", "busybox", "true").stderr == "the input device is not a TTY\n"
    )
    assert (
        skiff_bytes(daemon, config_dir, "run", "--rm", "-t", "busybox", "echo", "hi") == b"hi\r\n"
    )
    if not daemon.registry_port:
        pytest.skip("docker-registry is not installed")
    ref = f"127.0.0.1:{daemon.registry_port}/skiff/tty:progress"
    # an image of its own (one random layer), so the pull downloads rather than reuses
    import io
    import tarfile

    blob = os.urandom(300_000)
    tar = config_dir / "layer.tar"
    with tarfile.open(tar, "w") as tf:
        info = tarfile.TarInfo("random.bin")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    assert skiff("import", str(tar), ref).returncode == 0
    assert skiff("push", ref).returncode == 0
    assert skiff("rmi", ref).returncode == 0
    with terminal(daemon, config_dir, "pull", ref) as t:
        seen = t.expect(ref.encode())
        assert t.wait() == 0
    # per-layer lines are redrawn in place: cursor up, clear line, and back down
    assert b"\x1b[2K" in seen and b"A\x1b[2K\r" in seen and b"Pull complete" in seen
    skiff("rmi", ref)


def require_console_size(skiff: Runner) -> str:
    """The daemon's API version, once it is one that honours ConsoleSize (1.42+)."""
    version = skiff("version", "--format", "{{.Server.ApiVersion}}").stdout.strip()
    major, _, minor = version.partition(".")
    if (int(major), int(minor or 0)) < (1, 42):
        pytest.skip(f"the daemon speaks API {version}: ConsoleSize came with 1.42")
    return version


def test_exec_it_starts_with_the_terminal_size(
    skiff: Runner, daemon: Daemon, config_dir: Path
) -> None:
    require_console_size(skiff)
    # a command that reads its size once, at once: only ConsoleSize (sent at exec create
    # and start) can give it the size, the resize that follows comes too late
    n = f"t{uuid.uuid4().hex[:10]}"
    assert skiff("run", "-d", "--name", n, "busybox", "sleep", "300").returncode == 0
    try:
        # skiff, and the docker CLI (28 sends ConsoleSize at exec start) against the daemon
        for binary in (SKIFF, SKIFF, DOCKER, DOCKER):
            args = ("exec", "-it", n, "stty", "size")
            with terminal(daemon, config_dir, *args, binary=binary) as t:
                t.expect(b"30 100")
                assert t.wait() == 0
    finally:
        skiff("rm", "-f", n)


def test_run_it_sends_the_terminal_size(skiff: Runner, daemon: Daemon, config_dir: Path) -> None:
    require_console_size(skiff)
    n = f"t{uuid.uuid4().hex[:10]}"
    try:
        with terminal(daemon, config_dir, "run", "-it", "--name", n, "busybox", "true") as t:
            assert t.wait() == 0
        out = skiff("inspect", "-f", "{{json .HostConfig.ConsoleSize}}", n).stdout
        assert out == "[30,100]\n"
    finally:
        skiff("rm", "-f", n)
