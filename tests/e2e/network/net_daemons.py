"""skiffd with real networking, inside a network namespace the test made.

The networking e2e tests run skiffd (with its managed skiff-containerd) with
its default bridge, nftables table and userland proxy, but in a network
namespace `skiff-t-<random>` made with `ip netns add` (loopback up), plus the
private mount namespace (tmpfs /run and /opt) the engine's e2e fixtures use.
So every bridge, veth, nft rule and published port stays in that namespace
and no packet leaves it; the namespace's 127.0.0.1 is the "host loopback" a
published port answers on.

Use (the fixtures of tests/e2e/network/conftest.py build on this):

    from net_daemons import NetEngine, net_engine

    with net_engine() as eng:              # skiffd up in its namespace, busybox loaded
        eng.docker("network", "create", "n1")                 # docker CLI over eng.sock
        eng.docker("run", "-d", "-p", "8080:80", "busybox", ...)
        eng.in_netns("wget", "-qO-", "http://127.0.0.1:8080")  # a client in the namespace
        eng.restart_skiffd(kill=True)      # SIGKILL (or SIGTERM) and start it again
    # afterwards: containers, skiffd, skiff-containerd, shims killed by PID,
    # the namespace deleted, leftover cgroups and mounts removed

`eng.netns` is the namespace's name (`ip netns exec <name> ...`), `eng.env`
the environment for docker/docker-py (DOCKER_HOST), `eng.log_tail()` the
daemons' logs. Extra skiffd flags: `net_engine(extra_args=["--userland-proxy=false"])`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))

from engine_daemons import (
    BUSYBOX_TAR,
    PRELUDE,
    VENV_BIN,
    Engine,
    cleanup_base,
    load_busybox,
    new_base,
    wait_for,
)

__all__ = ["BUSYBOX_TAR", "NetEngine", "need_root_tools", "net_engine"]


def need_root_tools() -> str | None:
    """Why these tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "the network e2e tests make network namespaces and need root"
    for tool in ("ip", "nft", "unshare", "nsenter", "docker"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not BUSYBOX_TAR.exists():
        return f"{BUSYBOX_TAR} is missing: run `make images`"
    return None


class NetEngine(Engine):
    """engine_daemons.Engine whose holder (and so skiffd) lives in a test netns."""

    netns: str = ""
    extra_args: tuple[str, ...] = ()  # skiffd flags on every start

    def make_netns(self) -> None:
        self.netns = f"skiff-t-{secrets.token_hex(4)}"
        subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True)
        self.in_netns("ip", "link", "set", "lo", "up", check=True)

    def start_holder(self) -> None:
        """The private mount namespace, in the test netns, that skiffd will join."""
        assert self.netns
        self.containerd = subprocess.Popen(
            # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup mounts
            ["nsenter", f"--net=/run/netns/{self.netns}",
             "unshare", "--mount", "--propagation", "private",
             "sh", "-c", PRELUDE, "sh", "sleep", "infinity"],
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        self.managed = True
        (self.base / "empty.json").write_text("{}")
        deadline = time.monotonic() + 10
        # the holder is ready once `sleep` runs in the new mount namespace
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{self.containerd.pid}/exe").endswith("sleep"):
                    break
            time.sleep(0.02)

    def start_skiffd(self, *extra_args: str) -> None:
        assert self.containerd is not None
        holder = self.containerd.pid
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        with open(self.base / "skiffd.log", "ab") as log:
            self.skiffd = subprocess.Popen(
                ["nsenter", f"--mount=/proc/{holder}/ns/mnt", f"--net=/proc/{holder}/ns/net",
                 str(VENV_BIN / "skiffd"),
                 "-H", f"unix://{self.sock}",
                 "--data-root", str(self.data_root),
                 "--exec-root", str(self.exec_root),
                 "--pidfile", str(self.base / "skiffd.pid"),
                 "--config-file", str(self.base / "empty.json"),
                 "--log-level", "debug",
                 *self.extra_args, *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=env, start_new_session=True,
            )  # fmt: skip
        wait_for(self.sock, self.skiffd, self.base / "skiffd.log", 30)
        self.wait_ping(30)

    def restart_skiffd(self, *, kill: bool = False) -> None:
        """Stop skiffd (SIGKILL with kill=True, else SIGTERM) and start it again; its
        managed skiff-containerd and the containers keep running across."""
        assert self.skiffd is not None
        if kill:
            self.kill_skiffd()
        else:
            self.skiffd.send_signal(signal.SIGTERM)
            try:
                self.skiffd.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill_skiffd()
        with contextlib.suppress(FileNotFoundError):
            self.sock.unlink()
        self.start_skiffd()

    def in_netns(
        self, *argv: str, timeout: float = 30, check: bool = False, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run argv in the test netns (the "host" of skiffd's containers)."""
        res = subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv],
            capture_output=True, text=True, timeout=timeout, input=input,
        )  # fmt: skip
        if check and res.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({res.returncode}):\n{res.stderr}")
        return res

    def links(self) -> list[str]:
        """Interface names in the test netns."""
        out = self.in_netns("ip", "-o", "link", "show", check=True).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            if self.netns:
                # anything still in the namespace was started by this engine
                pids = self.in_netns_pids()
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)

    def in_netns_pids(self) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", self.netns], capture_output=True, text=True)
        return [int(p) for p in res.stdout.split() if p.isdigit()]


@contextlib.contextmanager
def net_engine(extra_args: tuple[str, ...] | list[str] = ()) -> Iterator[NetEngine]:
    """skiffd with its default bridge in a fresh test netns, busybox loaded; all removed after."""
    base = new_base()
    eng = NetEngine(base)
    eng.extra_args = tuple(extra_args)
    try:
        eng.make_netns()
        eng.start_holder()
        eng.start_skiffd()
        load_busybox(eng)
        yield eng
    except BaseException:
        print(eng.log_tail())
        raise
    finally:
        eng.stop()
        cleanup_base(base)
