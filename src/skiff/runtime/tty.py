"""A terminal for `run` and `exec` in the foreground without --console-socket.

As runc does, the runtime then keeps the pty master itself: it receives it
from init over a socket pair, puts its own terminal in raw mode, copies
bytes both ways, passes on window size changes, and restores the terminal
on every way out.
"""

from __future__ import annotations

import fcntl
import os
import select
import struct
import termios

from skiff.runtime.sig import signal

TIOCGWINSZ = 0x5413
TIOCSWINSZ = 0x5414


def socketpair() -> tuple[int, int]:
    import _socket

    a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM)
    return int(a.detach()), int(b.detach())


def receive_master(fd: int) -> int:
    import _socket

    sock = _socket.socket(fileno=fd)
    try:
        _, ancillary, _, _ = sock.recvmsg(4096, _socket.CMSG_SPACE(4))
    finally:
        sock.close()
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            master = int(struct.unpack("i", data[:4])[0])
            os.set_inheritable(master, False)
            return master
    raise OSError("no pty master received from init")


def copy_size(source: int, target: int) -> None:
    try:
        size = fcntl.ioctl(source, TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(target, TIOCSWINSZ, size)
    except OSError:
        pass


def proxy(master: int, pid: int, relay: object = None) -> int:
    """Copy stdin -> master and master -> stdout until `pid` (our child) exits."""
    stdin_tty = os.isatty(0)
    saved = termios.tcgetattr(0) if stdin_tty else None
    old_winch = None
    try:
        if stdin_tty:
            copy_size(0, master)
            raw = termios.tcgetattr(0)
            raw[0] &= ~(
                termios.BRKINT | termios.ICRNL | termios.INPCK | termios.ISTRIP | termios.IXON
            )
            raw[1] &= ~termios.OPOST
            raw[2] |= termios.CS8
            raw[3] &= ~(termios.ECHO | termios.ICANON | termios.IEXTEN | termios.ISIG)
            termios.tcsetattr(0, termios.TCSAFLUSH, raw)
            old_winch = signal.signal(signal.SIGWINCH, lambda s, f: copy_size(0, master))
        inputs = [master, 0]
        status = None
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [], 0.05)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if data:
                    os.write(1, data)
                else:
                    inputs.remove(master)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    inputs.remove(0)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                # what the process wrote last is still in the pty
                while True:
                    r, _, _ = select.select([master], [], [], 0.05)
                    if not r:
                        break
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    os.write(1, data)
                break
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSAFLUSH, saved)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        os.close(master)
