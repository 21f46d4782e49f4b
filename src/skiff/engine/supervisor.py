"""Finding or starting the supervisor, as dockerd does with containerd.

With `--containerd=SOCKET` skiffd uses that supervisor (skiff-containerd or
Debian's containerd) and waits while nothing listens there. Without it,
skiffd uses the default socket when something listens, else starts a
*managed* skiff-containerd with its own config and socket under the exec
root, restarts it if it dies, and stops it when skiffd stops (a
parent-death signal covers a skiffd killed outright). Containers live in
shims, so none of this ever stops one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys

from skiff.engine.config import DEFAULT_SUPERVISOR_SOCKET, DaemonConfig

log = logging.getLogger("skiffd.supervisor")


def listening(path: str) -> bool:
    """True when a unix socket at `path` accepts connections."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(0.5)
    try:
        sock.connect(path)
        return True
    except OSError:
        return False
    finally:
        sock.close()


def supervisor_binary() -> str:
    here = os.path.join(os.path.dirname(sys.executable), "skiff-containerd")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("skiff-containerd")
    if not found:
        raise FileNotFoundError("skiff-containerd not found next to skiffd or on PATH")
    return found


class Supervisor:
    def __init__(self, config: DaemonConfig):
        self.config = config
        self.managed = False
        self.process: subprocess.Popen[bytes] | None = None
        self.address = ""
        self._monitor: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def managed_dir(self) -> str:
        return os.path.join(self.config.exec_root, "containerd")

    async def start(self) -> str:
        if self.config.containerd:
            self.address = self.config.containerd
        elif listening(DEFAULT_SUPERVISOR_SOCKET):
            self.address = DEFAULT_SUPERVISOR_SOCKET
        else:
            self.managed = True
            self.address = os.path.join(self.managed_dir, "containerd.sock")
            self._spawn()
            self._monitor = asyncio.get_running_loop().create_task(self._watch())
        await self.wait_ready()
        log.info("supervisor at %s (%s)", self.address, "managed" if self.managed else "external")
        return self.address

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the supervisor accepts connections (forever when timeout is None)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.02
        warned = False
        while not listening(self.address):
            if self.managed and self.process is not None and self.process.poll() is not None:
                self._spawn()
            if deadline is not None and loop.time() > deadline:
                raise TimeoutError(f"supervisor at {self.address} did not answer")
            if not warned and delay >= 0.5:
                log.warning("waiting for the supervisor at %s", self.address)
                warned = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _spawn(self) -> None:
        os.makedirs(self.managed_dir, 0o711, exist_ok=True)
        config_path = os.path.join(self.managed_dir, "skiff-containerd.toml")
        with open(config_path, "w") as f:
            f.write(
                "# written by skiffd for its managed supervisor\n"
                f'root = "{os.path.join(self.config.data_root, "containerd")}"\n'
                f'state = "{os.path.join(self.managed_dir, "state")}"\n'
                "[grpc]\n"
                f'address = "{self.address}"\n'
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.address)
        logfile = open(os.path.join(self.managed_dir, "skiff-containerd.log"), "ab")  # noqa: SIM115
        argv = [
            supervisor_binary(),
            "--config",
            config_path,
            "--address",
            self.address,
            "--root",
            os.path.join(self.config.data_root, "containerd"),
            "--state",
            os.path.join(self.managed_dir, "state"),
            "--log-level",
            "debug" if self.config.log_level == "debug" else "info",
        ]
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logfile,
            stderr=logfile,
            preexec_fn=_die_with_parent,
            close_fds=True,
        )
        logfile.close()
        log.info("started managed skiff-containerd, pid %d", self.process.pid)

    async def _watch(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            if self.process is not None and self.process.poll() is not None and not self._stopping:
                log.warning(
                    "managed skiff-containerd exited (%s); restarting", self.process.returncode
                )
                self._spawn()

    async def stop(self) -> None:
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            for _ in range(100):
                if self.process.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                self.process.kill()
                self.process.wait()


def _die_with_parent() -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
