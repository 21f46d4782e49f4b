"""Runs the OCI runtime binary (skiff-runc, runc, crun) for skiff-shim.

The layer between the shim's task service and the OCI runtime command line.
Each command is one posix_spawn with the signal mask and SIGPIPE reset (the
shim blocks SIGCHLD and Python ignores SIGPIPE; neither may leak into the
runtime or the container). The reaper, not this module, collects the exit.
"""

from __future__ import annotations

import os
import select
from collections.abc import Callable

from skiff.errors import Internal, NotFound
from skiff.runtime.sig import signal

TYPE_CHECKING = False
if TYPE_CHECKING:
    from skiff.shim.forker import Forker
    from skiff.shim.reaper import Reaper

DEFAULT_RUNTIME = "skiff-runc"
_RESET_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def resolve_binary(name: str, python: str) -> str:
    """An absolute path for the runtime: as given, next to this Python (the venv), or on PATH."""
    if os.sep in name:
        return os.path.abspath(name)
    beside = os.path.join(os.path.dirname(python), name)
    if os.access(beside, os.X_OK):
        return beside
    for d in os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin").split(":"):
        candidate = os.path.join(d or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    raise NotFound(f"runtime binary {name} not found next to {python} or on PATH")


class OciRuntime:
    def __init__(
        self, binary: str, root: str, log_path: str, reaper: Reaper, forker: Forker | None = None
    ) -> None:
        self.binary = binary
        self.root = root
        self.log_path = log_path
        self._reaper = reaper
        # only for our own skiff-runc: its commands then run in forks of a warm helper
        self._forker = forker

    def _argv(self, args: list[str]) -> list[str]:
        return [
            self.binary,
            "--root",
            self.root,
            "--log",
            self.log_path,
            "--log-format",
            "json",
            *args,
        ]

    def spawn(self, args: list[str], stdio: tuple[int, int, int]) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(stdio)]
        try:
            return os.posix_spawn(
                self.binary,
                self._argv(args),
                os.environ,
                file_actions=actions,
                setsigmask=(),
                setsigdef=_RESET_SIGNALS,
            )
        except OSError as exc:
            raise Internal(f"run {self.binary}: {exc.strerror or exc}")

    def run(
        self, args: list[str], *, stdio: tuple[int, int, int] | None = None, input: bytes = b""
    ) -> bytes:
        """Run one command and return its stdout; a failure raises with the runtime's message.

        With stdio given (create, exec), those descriptors become the runtime's
        and so the container's, and errors are read from the runtime's log.
        """
        out = b""
        err = b""
        if stdio is not None:
            status = self._call(args, stdio)
        else:
            in_r, in_w = os.pipe()
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            started = False
            try:
                wait = self._start(args, (in_r, out_w, err_w))
                started = True
            finally:
                os.close(in_r)
                os.close(out_w)
                os.close(err_w)
                if not started:
                    os.close(in_w)
                    os.close(out_r)
                    os.close(err_r)
            try:
                if input:
                    os.write(in_w, input)
            except OSError:
                pass
            os.close(in_w)
            out, err = _read_both(out_r, err_r)
            status = wait()
        if status != 0:
            message = self.last_error() or err.decode(errors="replace").strip()
            raise Internal(
                f"{os.path.basename(self.binary)} {args[0]} failed (exit {status}): {message}"
            )
        return out

    def _call(self, args: list[str], stdio: tuple[int, int, int]) -> int:
        return self._start(args, stdio)()

    def _start(self, args: list[str], stdio: tuple[int, int, int]) -> Callable[[], int]:
        """Start one command on stdio; the result waits for its exit status."""
        forker = self._forker
        if forker is not None:
            from skiff.shim.forker import ForkerGone

            try:
                reply = forker.send(self._argv(args)[1:], stdio)
            except ForkerGone:
                self._forker = None  # the helper is gone: execute the binary from now on
            else:

                def wait() -> int:
                    try:
                        return forker.wait(reply)
                    except OSError as exc:
                        raise Internal(f"{os.path.basename(self.binary)} {args[0]}: {exc}")

                return wait
        pid = self.spawn(args, stdio)
        return lambda: self._reaper.wait(pid)

    def last_error(self) -> str:
        """The last error the runtime wrote to its JSON log, if any."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 8192))
                lines = f.read().splitlines()
        except OSError:
            return ""
        import json

        for line in reversed(lines):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                return str(entry.get("msg", ""))
        return ""

    # The OCI runtime command line ------------------------------------------------

    def create(
        self,
        container_id: str,
        bundle: str,
        pid_file: str,
        stdio: tuple[int, int, int],
        console_socket: str = "",
    ) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self.run([*args, container_id], stdio=stdio)

    def start(self, container_id: str) -> None:
        self.run(["start", container_id])

    def exec(
        self,
        container_id: str,
        process_json: str,
        pid_file: str,
        stdio: tuple[int, int, int],
        console_socket: str = "",
    ) -> None:
        args = ["exec", "--detach", "--process", process_json, "--pid-file", pid_file]
        if console_socket:
            args += ["--tty", "--console-socket", console_socket]
        self.run([*args, container_id], stdio=stdio)

    def kill(self, container_id: str, signum: int, all_processes: bool = False) -> None:
        self.run(["kill", *(["--all"] if all_processes else []), container_id, str(signum)])

    def delete(self, container_id: str, force: bool = False) -> None:
        self.run(["delete", *(["--force"] if force else []), container_id])

    def pause(self, container_id: str) -> None:
        self.run(["pause", container_id])

    def resume(self, container_id: str) -> None:
        self.run(["resume", container_id])

    def update(self, container_id: str, resources_json: bytes) -> None:
        self.run(["update", "--resources", "-", container_id], input=resources_json)

    def ps(self, container_id: str) -> list[int]:
        import json

        out = self.run(["ps", "--format", "json", container_id])
        pids = json.loads(out or b"[]")
        return [int(p) for p in pids or []]


def _read_both(out_fd: int, err_fd: int) -> tuple[bytes, bytes]:
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    open_fds = [out_fd, err_fd]
    try:
        while open_fds:
            ready, _, _ = select.select(open_fds, [], [])
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    open_fds.remove(fd)
    finally:
        os.close(out_fd)
        os.close(err_fd)
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd])
