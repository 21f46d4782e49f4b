"""The shim template: a pre-imported process that every skiff-shim is forked from.

Sits beside the shims of one supervisor address (skiff.shim.main starts it on
the first `start`). It holds every module a shim needs, imported and
gc.freeze()'d, and waits on a root-only unix socket. `start` sends it the
bundle, the arguments, the environment and the shim's listening socket (over
SCM_RIGHTS); the template forks, the child calls setsid() and forks the shim
itself, which answers with its pid and serves. Every shim so shares the
interpreter's pages with the template and with its siblings, copy-on-write,
and starts in a fork's time instead of an interpreter's.

This module is imported by every `start`, so at module level it needs only
os, sys and _socket; the template's side imports the daemon when it runs.
"""

from __future__ import annotations

import _socket
import os
import sys
import time

from skiff.ttrpc.shimstart import PROTOCOL
from skiff.ttrpc.shimstart import TemplateGone as TemplateGone  # the start side, re-exported
from skiff.ttrpc.shimstart import code_stamp as code_stamp
from skiff.ttrpc.shimstart import request_shim as request_shim
from skiff.ttrpc.shimstart import template_path as template_path

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket

    from skiff.shim.main import Args

_MAX_MESSAGE = 1 << 20
_POLL_SECONDS = 5.0  # how often an idle template looks at its socket, shims and supervisor
_IDLE_SECONDS = 60.0  # a template with no shim left waits this long for the next start


# --- the start side: skiff.ttrpc.shimstart, shared with skiff-containerd ------------


def bind_template_socket(path: str) -> _socket.socket:
    """Listen at path, root-only; an older template there is displaced by the rename."""
    tmp = f"{path}.{os.getpid()}"
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        sock.bind(tmp)
        os.chmod(tmp, 0o600)
        sock.listen(64)
        os.rename(tmp, path)
    except OSError:
        sock.close()
        raise
    return sock


def spawn_template(path: str, stamp: bytes, address: str, argv0: str) -> None:
    """Start a template at path from this (fully imported) process: listen, then fork it off.

    The socket listens before the fork, so the caller may connect at once.
    """
    import skiff.shim.daemon  # noqa: F401  everything a shim runs, imported before the fork

    sock = bind_template_socket(path)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            if os.fork() == 0:
                code = serve_template(sock, path, stamp, address, argv0)
            else:
                code = 0
        finally:
            os._exit(code)
    sock.close()
    os.waitpid(pid, 0)


# --- the template side ---------------------------------------------------------


def serve_template(sock: _socket.socket, path: str, stamp: bytes, address: str, argv0: str) -> int:
    """The template's loop: one request at a time, single-threaded (it forks)."""
    import gc
    import socket

    from skiff.shim import syscalls

    listener = socket.socket(fileno=sock.detach())
    _detach(listener.fileno())
    name = os.path.join(os.path.dirname(argv0), "skiff-shim-template")
    syscalls.set_cmdline([name, "-address", address])
    # What a shim may import later, imported once here to be shared.
    import json  # noqa: F401

    from skiff.shim.forker import preimport

    preimport()  # skiff-runc's code, run by each shim's runtime helper (skiff.shim.forker)

    gc.collect()
    # Objects that exist now are never scanned by the collector again, so
    # shims do not dirty (unshare) their pages by collecting.
    gc.freeze()
    me = os.stat(path)
    listener.settimeout(_POLL_SECONDS)
    shims: list[int] = []  # pidfds of the shims forked from here
    busy_at = time.monotonic()
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not _still_ours(path, me):
                return 0  # displaced by a newer template, or the directory is gone
            shims = _living(shims)
            now = time.monotonic()
            if shims:
                busy_at = now
            elif now - busy_at > _IDLE_SECONDS or not os.path.exists(address):
                # Nothing forked from here runs, and no supervisor (or none
                # lately) asks for more: do not outlive the supervisor.
                os.unlink(path)
                return 0
            continue
        except OSError:
            return 1
        busy_at = time.monotonic()
        with conn:
            stale, pidfd = _serve_request(conn, stamp)
        if pidfd >= 0:
            shims.append(pidfd)
        if stale:
            if _still_ours(path, me):
                os.unlink(path)
            return 0


def _living(pidfds: list[int]) -> list[int]:
    """The pidfds whose process still runs (a pidfd turns readable when its process exits)."""
    import select

    if not pidfds:
        return pidfds
    gone, _, _ = select.select(pidfds, [], [], 0)
    for fd in gone:
        os.close(fd)
    return [fd for fd in pidfds if fd not in gone]


def _still_ours(path: str, me: os.stat_result) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino)


def _detach(keep: int) -> None:
    """Let go of the first start's descriptors: containerd waits for its pipes' EOF."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    _close_all_but(keep)


def _close_all_but(*keep: int) -> None:
    """Close every descriptor above stderr except keep."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _serve_request(conn: socket.socket, stamp: bytes) -> tuple[bool, int]:
    """Fork a shim for one request: (the caller runs other code, a pidfd of the shim or -1).

    When the caller runs other code, this template must go.
    """
    import array
    import socket

    from skiff.shim import syscalls

    fds = array.array("i")
    try:
        conn.settimeout(10.0)
        try:
            message, ancdata, _flags, _addr = conn.recvmsg(
                _MAX_MESSAGE, socket.CMSG_SPACE(4 * fds.itemsize)
            )
            for level, kind, data in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        except OSError:
            return False, -1
        try:
            peer_uid = int.from_bytes(creds[4:8], sys.byteorder)
            fields = message.split(b"\0")
            if fields[0] != PROTOCOL or len(fds) != 1 or peer_uid != os.geteuid():
                conn.send(b"error bad request")
                return False, -1
            if fields[1] != stamp:
                conn.send(b"stale")
                return True, -1
            bundle = os.fsdecode(fields[2])
            umask = int(fields[3], 8)
            nargs = int(fields[4])
            argv = [os.fsdecode(a) for a in fields[5 : 5 + nargs]]
            env = [kv.split(b"=", 1) for kv in fields[5 + nargs :] if b"=" in kv]
        except (ValueError, IndexError):
            conn.send(b"error bad request")
            return False, -1
        pid_r, pid_w = os.pipe()
        pid = syscalls.fork_bare()  # the template is single-threaded
        if pid == 0:
            # neither the template's socket nor the pidfds of other shims
            _close_all_but(conn.fileno(), fds[0], pid_w)
            _become_shim(conn, fds[0], bundle, umask, argv, env, pid_w)  # never returns
        os.close(pid_w)
        os.waitpid(pid, 0)
        with open(pid_r, "rb") as f:
            shim_pid = f.read()
        try:
            return False, os.pidfd_open(int(shim_pid))
        except (ValueError, OSError):
            return False, -1  # already gone, or no pidfds: the idle timer alone decides
    finally:
        for fd in fds:
            os.close(fd)


def _become_shim(
    conn: socket.socket,
    listener_fd: int,
    bundle: str,
    umask: int,
    argv: list[str],
    env: list[list[bytes]],
    pid_w: int,
) -> None:
    """In the template's child: detach once more, then run the shim for bundle."""
    import socket

    from skiff.shim import syscalls
    from skiff.shim.main import parse_args

    code = 1
    try:
        os.setsid()
        shim_pid = syscalls.fork_bare()
        if shim_pid != 0:
            os.write(pid_w, b"%d" % shim_pid)  # so the template knows when its shims are gone
            os._exit(0)
        os.close(pid_w)
        os.environb.clear()
        for key, value in env:
            os.environb[key] = value
        os.chdir(bundle)
        os.umask(umask)
        sys.argv = argv
        args = parse_args(argv[1:])
        listener = socket.socket(fileno=listener_fd)
        conn.send(b"ok %d" % os.getpid())
        conn.close()
        code = run_shim(args, bundle, listener)
    except BaseException as exc:
        from skiff.shim.main import last_words

        last_words(bundle, exc)
    os._exit(code)


def run_shim(args: Args, bundle: str, listener: socket.socket) -> int:
    """The forked shim, from a template or from `start` itself: name it, then serve."""
    from skiff.shim import syscalls
    from skiff.shim.daemon import run_daemon
    from skiff.shim.main import socket_path

    # What ps and the supervisor's tools see: the shim's own arguments, as
    # containerd-shim-runc-v2 re-executes itself with, not the template's.
    cmdline = [sys.argv[0], "-namespace", args.namespace, "-id", args.id, "-address", args.address]
    syscalls.set_cmdline(cmdline)
    return run_daemon(args, bundle, listener, socket_path(args.address, args.namespace, args.id))
