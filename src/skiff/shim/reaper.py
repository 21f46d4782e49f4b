"""Reaps every child of skiff-shim and hands each exit to whoever waits for it.

The shim is a child subreaper, so both the OCI runtime it executes and the
container processes (reparented to it when the runtime exits) end up here.
Only the main thread calls waitpid: runtime invocations and container
processes register for their pid, and exits that arrive before anyone asks
are kept for a while (a container may die before its pid file is read).
"""

from __future__ import annotations

import os
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    # (exit status as containerd reports it, exit time in ns since the epoch)
    ExitCallback = Callable[[int, int], None]

_KEEP_UNCLAIMED_NS = 300 * 1_000_000_000


def exit_status(wait_status: int) -> int:
    """containerd's exit status: the exit code, or 128 + the killing signal."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


class Reaper:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._unclaimed: dict[int, tuple[int, int]] = {}
        self._callbacks: dict[int, ExitCallback] = {}

    def reap(self) -> None:
        """Collect every exited child; called by the main thread on SIGCHLD."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._exited(pid, exit_status(status), time.time_ns())

    def _exited(self, pid: int, status: int, at_ns: int) -> None:
        with self._cond:
            callback = self._callbacks.pop(pid, None)
            if callback is None:
                self._unclaimed[pid] = (status, at_ns)
                self._prune(at_ns)
                self._cond.notify_all()
        if callback is not None:
            callback(status, at_ns)

    def _prune(self, now_ns: int) -> None:
        stale = [p for p, (_, t) in self._unclaimed.items() if now_ns - t > _KEEP_UNCLAIMED_NS]
        for p in stale:
            del self._unclaimed[p]

    def on_exit(self, pid: int, callback: ExitCallback) -> None:
        """Call callback(status, at_ns) when pid exits (at once if it already has)."""
        with self._cond:
            early = self._unclaimed.pop(pid, None)
            if early is None:
                self._callbacks[pid] = callback
        if early is not None:
            callback(*early)

    def wait(self, pid: int) -> int:
        """Block until pid (a direct child) exits; return its exit status."""
        with self._cond:
            while pid not in self._unclaimed:
                self._cond.wait()
            return self._unclaimed.pop(pid)[0]
