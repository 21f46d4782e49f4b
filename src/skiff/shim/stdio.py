"""The stdio of one container process, held by skiff-shim.

containerd names FIFOs (or files) for stdin, stdout and stderr. Without a
terminal the runtime hands our descriptors straight to the container, so no
byte passes through the shim; the shim keeps a reader on each output FIFO
(a detached client must not turn writes into SIGPIPE). stdin is copied by a
thread from the FIFO into a pipe. As containerd's own shim, we hold a writer
of our own on the stdin FIFO: a client that goes away (skiffd killed and
restarted) is no EOF, so the container waits for the next client's input, and
only CloseIO (which closes that writer) lets the copy drain what is buffered
and reach EOF once every client's writer is closed too. With a terminal the
runtime sends the pty master over a console socket and the shim copies both
ways.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import stat
import struct
import termios
import threading

from skiff.errors import InvalidArgument, NotImplemented_


def _open_output(path: str) -> tuple[int, int | None]:
    """(writer, held reader or None) for an output path."""
    if not path:
        return os.open(os.devnull, os.O_WRONLY), None
    if path.startswith("binary://"):
        raise NotImplemented_("binary:// logging is not supported by skiff-shim")
    if path.startswith("file://"):
        path = path[len("file://") :]
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640), None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        os.mkfifo(path, 0o700)
        st = os.stat(path)
    if not stat.S_ISFIFO(st.st_mode):
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640), None
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    writer = os.open(path, os.O_WRONLY)  # does not block: we hold a reader
    return writer, reader


def _is_fifo(path: str) -> bool:
    if not os.path.exists(path):
        os.mkfifo(path, 0o700)
        return True
    return stat.S_ISFIFO(os.stat(path).st_mode)


class ProcessIO:
    def __init__(self, stdin: str, stdout: str, stderr: str, terminal: bool) -> None:
        self.stdin, self.stdout, self.stderr, self.terminal = stdin, stdout, stderr, terminal
        # readers of the output FIFOs: kept until the process is deleted, so what it
        # wrote last stays in the FIFO for a client that (re)connects after its exit
        self._held: list[int] = []
        self._stdin_writer: int | None = None  # where the stdin copy writes
        self._fifo_writer: int | None = None  # our own writer on the stdin FIFO
        self._stdin_closed = False  # CloseIO came (maybe before the copy thread opened)
        self._child: list[int] = []  # closed once the runtime has them
        self._stdout_writer: int | None = None
        self._master: int | None = None
        self._copied = threading.Event()
        self._lock = threading.Lock()

    def open(self) -> tuple[int, int, int]:
        """Open the named stdio; return the descriptors the runtime gets."""
        try:
            stdin_r = self._open_stdin()
            out_w, out_r = _open_output(self.stdout)
            self._track(out_r)
            if self.stderr and self.stderr == self.stdout:
                err_w = os.dup(out_w)
            else:
                err_w, err_r = _open_output(self.stderr)
                self._track(err_r)
        except OSError as exc:
            self.close()
            raise InvalidArgument(f"open stdio: {exc}")
        if self.terminal:
            # the runtime gets /dev/null; the pty carries the streams
            self._stdout_writer = out_w
            os.close(err_w)
            null = os.open(os.devnull, os.O_RDWR)
            self._child = [null]
            return null, null, null
        self._child = [stdin_r, out_w, err_w]
        self._copied.set()
        return stdin_r, out_w, err_w

    def _open_stdin(self) -> int:
        """The container's stdin: /dev/null, a file, or a pipe fed from the FIFO."""
        if not self.stdin:
            return os.open(os.devnull, os.O_RDONLY)
        if not _is_fifo(self.stdin):
            return os.open(self.stdin, os.O_RDONLY)
        if self.terminal:
            return os.open(os.devnull, os.O_RDONLY)  # fed once the pty master arrives
        r, w = os.pipe()
        self._stdin_writer = w
        threading.Thread(target=self._copy_in, daemon=True).start()
        return r

    def _track(self, fd: int | None) -> None:
        if fd is not None:
            self._held.append(fd)

    def runtime_started(self) -> None:
        """The runtime holds its copies now; drop ours so EOF follows the container."""
        for fd in self._child:
            _close(fd)
        self._child = []

    def attach_console(self, master: int) -> None:
        self._master = master
        if self._stdout_writer is not None:
            threading.Thread(
                target=self._copy_out, args=(master, self._stdout_writer), daemon=True
            ).start()
            self._stdout_writer = None
        if self.stdin and _is_fifo(self.stdin):
            self._stdin_writer = os.dup(master)
            threading.Thread(target=self._copy_in, daemon=True).start()

    def _copy_out(self, src: int, dst: int) -> None:
        try:
            while True:
                try:
                    data = os.read(src, 32768)
                except OSError:
                    break  # EIO: every slave end is closed
                if not data:
                    break
                try:
                    os.write(dst, data)
                except OSError:
                    break
        finally:
            _close(dst)
            self._copied.set()

    def _copy_in(self) -> None:
        try:
            # non-blocking opens: the reader does not wait for a writer, and our own
            # writer then keeps the FIFO from ever reading EOF before CloseIO
            src = os.open(self.stdin, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            self._end_stdin()
            return
        try:
            keep = os.open(self.stdin, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            _close(src)
            self._end_stdin()
            return
        with self._lock:
            if self._stdin_closed or self._stdin_writer is None:
                _close(keep)  # CloseIO or the exit came first: EOF as soon as clients close
            else:
                self._fifo_writer = keep
        try:
            os.set_blocking(src, True)
            while True:
                data = os.read(src, 32768)
                with self._lock:
                    dst = self._stdin_writer
                if not data or dst is None:
                    break
                os.write(dst, data)
        except OSError:
            pass
        finally:
            os.close(src)
            self._end_stdin()

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def close_stdin(self) -> None:
        """CloseIO: drop our writer on the FIFO; the copy drains what is left, then EOF."""
        with self._lock:
            self._stdin_closed = True
            if self._fifo_writer is not None:
                _close(self._fifo_writer)
                self._fifo_writer = None

    def _end_stdin(self) -> None:
        """The copy is over or the process is gone: the container's stdin ends now."""
        with self._lock:
            self._stdin_closed = True
            for fd in (self._fifo_writer, self._stdin_writer):
                if fd is not None:
                    _close(fd)
            self._fifo_writer = self._stdin_writer = None

    def wait_copied(self, timeout: float) -> None:
        self._copied.wait(timeout)

    def process_exited(self) -> None:
        """The process is gone: let go of everything but the output FIFOs' readers."""
        self._end_stdin()
        with self._lock:
            for fd in self._child:
                _close(fd)
            self._child = []
            for maybe in (self._stdout_writer, self._master):
                if maybe is not None:
                    _close(maybe)
            self._stdout_writer = self._master = None

    def close(self) -> None:
        """The process is deleted (or never started): let go of everything."""
        self.process_exited()
        with self._lock:
            for fd in self._held:
                _close(fd)
            self._held = []


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


class ConsoleSocket:
    """A unix socket the runtime connects to with --console-socket to pass the pty master."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(1)

    def receive_master(self, timeout: float = 10.0) -> int:
        self._sock.settimeout(timeout)
        conn, _ = self._sock.accept()
        with conn:
            conn.settimeout(timeout)
            fds = array.array("i")
            _msg, ancdata, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize))
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if not fds:
            raise InvalidArgument("console socket: the runtime sent no pty master")
        return fds[0]

    def close(self) -> None:
        self._sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass
