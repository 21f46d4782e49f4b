"""The long-lived skiff-shim process: ttrpc server, reaper loop and event publisher.

Forked by `skiff-shim start` (skiff.shim.main). The main thread only reaps
children (SIGCHLD is blocked everywhere and taken with sigtimedwait); each
ttrpc connection and call has its own thread (skiff.ttrpc.server).
"""

from __future__ import annotations

import _socket
import os
import socket
import sys
import threading
import time

from skiff.runtime.sig import signal
from skiff.shim import syscalls
from skiff.shim.forker import start_forker
from skiff.shim.publisher import publisher_from_env
from skiff.shim.reaper import Reaper
from skiff.shim.service import TaskService
from skiff.ttrpc import task as api
from skiff.ttrpc.protobuf import Empty
from skiff.ttrpc.server import Server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from skiff.shim.main import Args
    from skiff.ttrpc.protobuf import Message
    from skiff.ttrpc.server import Handler

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGHUP}


class _Log:
    """Writes to containerd's <bundle>/log FIFO when it listens, never blocking the shim."""

    def __init__(self, bundle: str, debug: bool) -> None:
        self._bundle = bundle
        self._debug_file = os.path.join(bundle, "shim.log") if debug else ""
        self._lock = threading.Lock()

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} skiff-shim[{os.getpid()}]: {message}\n"
        data = line.encode(errors="replace")
        with self._lock:
            try:
                os.write(2, data)
            except OSError:
                pass
            if self._debug_file:
                try:
                    with open(self._debug_file, "ab") as f:
                        f.write(data)
                except OSError:
                    pass


class _Listener(socket.socket):
    """A listening socket whose accept() skips socket.py's enum conversions.

    socket.socket.accept() builds an AddressFamily and a SocketKind enum for
    every connection; running enum's code in a shim unshares the pages that
    hold it, which the shim otherwise shares with its template.
    """

    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        return socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, fileno=fd), address


def _redirect_stdio(bundle: str) -> None:
    """Detach from the caller's pipes: containerd waits for their EOF."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    log_fd = null
    try:
        log_fd = os.open(os.path.join(bundle, "log"), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:
        pass  # no FIFO, or nobody reading it
    os.dup2(log_fd, 2)
    if log_fd != null:
        os.close(log_fd)
    os.close(null)


def task_handlers(service: TaskService) -> dict[str, Handler]:
    """The ttrpc adapter: decode, call the service, encode."""

    def unary(request_type: type[Message], call: Callable[..., Message | None]) -> Handler:
        def handler(payload: bytes, metadata: dict[str, str]) -> bytes:
            response = call(request_type.decode(payload))
            return (response or Empty()).encode()

        return handler

    return {
        "State": unary(api.StateRequest, service.state),
        "Create": unary(api.CreateTaskRequest, service.create),
        "Start": unary(api.StartRequest, service.start),
        "Delete": unary(api.DeleteRequest, service.delete),
        "Pids": unary(api.PidsRequest, service.pids),
        "Pause": unary(api.PauseRequest, service.pause),
        "Resume": unary(api.ResumeRequest, service.resume),
        "Kill": unary(api.KillRequest, service.kill),
        "Exec": unary(api.ExecProcessRequest, service.exec),
        "ResizePty": unary(api.ResizePtyRequest, service.resize_pty),
        "CloseIO": unary(api.CloseIORequest, service.close_io),
        "Update": unary(api.UpdateTaskRequest, service.update),
        "Wait": unary(api.WaitRequest, service.wait),
        "Stats": unary(api.StatsRequest, service.stats),
        "Connect": unary(api.ConnectRequest, service.connect),
        "Shutdown": unary(api.ShutdownRequest, service.shutdown),
    }


def run_daemon(args: Args, bundle: str, listener: socket.socket, socket_path: str) -> int:
    from skiff.shim.main import runtime_root

    _redirect_stdio(bundle)
    log = _Log(bundle, args.debug)
    syscalls.set_child_subreaper()
    # Block before any thread exists, so every thread inherits the mask and
    # only sigtimedwait below sees these signals.
    signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    # Forked now, while this process has one thread: the helper that runs our own
    # skiff-runc's commands without starting an interpreter (skiff.shim.forker).
    helper = os.path.join(os.path.dirname(sys.argv[0]), "skiff-shim-runc-helper")
    forker = start_forker([helper, "-namespace", args.namespace, "-id", args.id])
    stopping = threading.Event()

    try:
        own_socket = os.stat(socket_path).st_ino
    except OSError:
        own_socket = -1

    def release_socket_path() -> None:
        # only ours: a new shim for the same id may already listen at this path
        try:
            if os.stat(socket_path).st_ino == own_socket:
                os.unlink(socket_path)
        except OSError:
            pass

    def shutdown() -> None:
        # at once, so that a `start` for the same id right after our Delete makes a new
        # shim instead of handing out the address of one that is going away
        release_socket_path()
        stopping.set()
        os.kill(os.getpid(), signal.SIGUSR1)

    reaper = Reaper()
    publisher = publisher_from_env(args.namespace, args.publish_binary, args.address, log)
    service = TaskService(
        container_id=args.id,
        namespace=args.namespace,
        bundle=bundle,
        runtime_root=runtime_root(args.address, args.namespace),
        reaper=reaper,
        publisher=publisher,
        shutdown=shutdown,
        log=log,
        forker=forker,
    )
    server = Server(on_error=log)
    server.register(api.SERVICE, task_handlers(service))
    server.serve_in_thread(_Listener(fileno=listener.detach()))
    log(f"serving {args.namespace}/{args.id} on {socket_path}")

    while True:
        info = signal.sigtimedwait(_SIGNALS, 10.0)
        reaper.reap()  # also on timeout: SIGCHLDs coalesce
        if info is None or info.si_signo == signal.SIGCHLD:
            continue
        if info.si_signo == signal.SIGHUP:
            continue
        if info.si_signo in (signal.SIGTERM, signal.SIGINT):
            service.shutdown(api.ShutdownRequest(id=args.id))
            continue
        if stopping.is_set():
            break
    # let the Shutdown response reach containerd, and the last events go out
    time.sleep(0.05)
    publisher.flush(2.0)
    server.close()
    release_socket_path()
    log("shut down")
    sys.stdout.flush()
    return 0
