"""Runs skiff-runc's commands in forks of a pre-imported helper instead of new interpreters.

Between skiff-shim's runtime module (skiff.shim.runtime) and skiff-runc's
command line (skiff.runtime.cli). When the runtime binary is this checkout's
own skiff-runc launcher, a `create`, `start`, `kill` or `delete` need not pay
for an interpreter and its imports (about 15 ms each, three times per
container): the same code is already in memory. The shim is multi-threaded,
so it cannot fork and run Python in the child safely; instead it forks this
helper first, while it still has one thread, and the helper (single-threaded
for good) forks one child per command, which runs skiff.runtime.cli.main on
the stdio it was given and exits with its status.

The command's process is the helper's child and so a descendant of the shim:
the container's init, orphaned when the runtime exits, is reparented to the
shim (the child subreaper), exactly as with an executed runtime. Any other
runtime binary (runc, crun, another checkout's skiff-runc) is executed as
before; so is everything when the helper is gone.

Protocol: a SOCK_SEQPACKET pair. Each request is one message: the arguments
(NUL-separated) with four descriptors (stdin, stdout, stderr, and the reply
end of a fresh socket pair); the helper answers on that reply socket "+"
once it has forked the command, then the exit status as containerd reports
it once the command has exited. Requests from several threads run
concurrently. The helper leaves after IDLE_SECONDS without a command: it
serves a container's start (and the delete of a quick one), and a
long-running container does not keep paying for it.
"""

from __future__ import annotations

import _socket
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

_FD_SIZE = 4  # sizeof(int) in SCM_RIGHTS
_LAUNCHER_MARK = b"# a lean launcher written by tools/launchers.py"
_RUNTIME_MODULE = b"from skiff.runtime.cli import main"
_DISABLE_ENV = "SKIFF_SHIM_EXEC_RUNTIME"  # set to 1: always execute the runtime binary
# A helper costs its shim about 1.4 MB of pages (those the shim writes after the fork
# are copied for one of them): it serves a container's start and a quick exit, then
# goes, and a long-running container's later commands are executed.
IDLE_SECONDS = 10.0


class ForkerGone(Exception):
    """The helper did not take the request: execute the runtime instead."""


def preimport() -> None:
    """Import what a runtime command runs, so forks start warm (called by the template too)."""
    import fcntl  # noqa: F401
    import json  # noqa: F401
    import resource  # noqa: F401
    import select  # noqa: F401
    import struct  # noqa: F401

    import skiff.runtime.caps
    import skiff.runtime.cgroups
    import skiff.runtime.cli
    import skiff.runtime.commands
    import skiff.runtime.config
    import skiff.runtime.container
    import skiff.runtime.hooks
    import skiff.runtime.linux
    import skiff.runtime.process
    import skiff.runtime.quick
    import skiff.runtime.rootfs
    import skiff.runtime.seccomp
    import skiff.runtime.state
    import skiff.runtime.tty  # noqa: F401


def is_own_runtime(binary: str) -> bool:
    """Whether binary is the lean skiff-runc launcher of the code this process runs."""
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return False
    try:
        with open(binary, "rb") as f:
            head = f.read(1024)
    except OSError:
        return False
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return (
        _LAUNCHER_MARK in head
        and _RUNTIME_MODULE in head
        and f"sys.path.insert(0, {src!r})".encode() in head
    )


class Forker:
    """The shim's end: send a command, wait for its status."""

    def __init__(self, sock: _socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid

    def send(self, argv: list[str], stdio: tuple[int, int, int]) -> _socket.socket:
        """Start skiff-runc with argv (without the program name) on stdio.

        Returns the socket wait() reads the exit status from. Raises ForkerGone
        when the helper did not take the command (it was not run).
        """
        mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        try:
            fds = (*stdio, theirs.fileno())
            self._sock.sendmsg(
                [b"\0".join(os.fsencode(a) for a in argv)],
                [
                    (
                        _socket.SOL_SOCKET,
                        _socket.SCM_RIGHTS,
                        b"".join(fd.to_bytes(_FD_SIZE, sys.byteorder) for fd in fds),
                    )
                ],
            )
            theirs.close()
            # "+" once forked: without it the command never ran (the helper was gone,
            # or left idle with this request still queued) and may be executed instead
            ack = mine.recv(8)
        except OSError as exc:
            mine.close()
            raise ForkerGone(f"runtime helper: {exc}") from None
        finally:
            theirs.close()
        if ack != b"+":
            mine.close()
            raise ForkerGone("runtime helper did not take the command")
        return mine

    @staticmethod
    def wait(reply: _socket.socket) -> int:
        """The exit status of the command sent with reply, once it has exited."""
        try:
            answer = reply.recv(64)
        finally:
            reply.close()
        if not answer:
            # taken, then the helper died: the command may have run; its status is unknown
            raise OSError("runtime helper died during the command")
        return int(answer)

    def close(self) -> None:
        self._sock.close()


def start_forker(cmdline: list[str], idle_seconds: float = IDLE_SECONDS) -> Forker | None:
    """Fork the helper, named cmdline; call while this process has a single thread.

    None if it cannot. Its name is not the shim's: tools that find shims by
    their arguments must not count it. It exits after idle_seconds without a
    command (and when the shim's end closes).
    """
    from skiff.shim import syscalls

    try:
        preimport()
        ours, helper_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    except (ImportError, OSError):
        return None
    try:
        pid = syscalls.fork_bare()  # single-threaded here, as in the template
    except OSError:
        ours.close()
        helper_end.close()
        return None
    if pid == 0:
        code = 1
        try:
            ours.close()
            _close_above_stdio(helper_end.fileno())
            syscalls.set_cmdline(cmdline)
            code = _serve(helper_end, idle_seconds)
        finally:
            os._exit(code)
    helper_end.close()
    return Forker(ours, pid)


def _close_above_stdio(*keep: int) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _serve(sock: _socket.socket, idle_seconds: float) -> int:
    """The helper: fork a child per request, answer each when its child exits."""
    import select
    import time

    from skiff.shim.reaper import exit_status

    pending: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, reply socket)
    listening = True
    busy_at = time.monotonic()
    while listening or pending:
        watch = ([sock.fileno()] if listening else []) + list(pending)
        timeout = None if pending else max(0.0, busy_at + idle_seconds - time.monotonic())
        ready, _, _ = select.select(watch, [], [], timeout)
        if not ready and not pending:
            return 0  # idle: the shim executes the runtime from now on
        busy_at = time.monotonic()
        for fd in ready:
            if fd == sock.fileno():
                if not _take(sock, pending):
                    listening = False  # the shim is gone: finish what runs, then exit
                continue
            pid, reply = pending.pop(fd)
            os.close(fd)
            _, status = os.waitpid(pid, 0)
            try:
                reply.send(b"%d" % exit_status(status))
            except OSError:
                pass
            reply.close()
    return 0


def _take(sock: _socket.socket, pending: dict[int, tuple[int, socket.socket]]) -> bool:
    """Receive one request and fork its command; False once the shim has closed its end."""
    import array
    import socket

    from skiff.shim import syscalls

    fds = array.array("i")
    try:
        message, ancdata, _flags, _addr = sock.recvmsg(
            1 << 20, _socket.CMSG_SPACE(4 * fds.itemsize)
        )
    except InterruptedError:
        return True
    except OSError:
        return False
    for level, kind, data in ancdata:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if not message and not ancdata:
        return False
    if len(fds) != 4:
        for fd in fds:
            os.close(fd)
        return True
    reply = socket.socket(fileno=fds[3])
    argv = [os.fsdecode(a) for a in message.split(b"\0")]
    try:
        pid = syscalls.fork_bare()
    except OSError:
        pid = -1
    if pid == 0:
        _run_command(argv, fds[0], fds[1], fds[2])  # never returns
    for fd in fds[:3]:
        os.close(fd)
    if pid < 0:
        reply.close()  # no "+": not run, the shim executes it
        return True
    try:
        reply.send(b"+")
    except OSError:
        pass
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        # no pidfd: wait here (the command still runs to its end)
        from skiff.shim.reaper import exit_status

        _, status = os.waitpid(pid, 0)
        reply.send(b"%d" % exit_status(status))
        reply.close()
        return True
    pending[pidfd] = (pid, reply)
    return True


def _run_command(argv: list[str], stdin: int, stdout: int, stderr: int) -> None:
    """In the helper's child: become `skiff-runc argv` on the given stdio, then exit."""
    code = 1
    try:
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)
        _close_above_stdio()
        # as posix_spawn(setsigmask=()) gives an executed runtime; SIGPIPE and SIGXFSZ
        # stay ignored, as the runtime's own interpreter would set them
        from skiff.runtime.sig import signal

        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
        from skiff.runtime.cli import main

        sys.argv = ["skiff-runc", *argv]
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code)
