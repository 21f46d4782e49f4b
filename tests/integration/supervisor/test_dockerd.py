"""Debian's dockerd 20.10 over skiff-containerd (`dockerd --containerd SOCK`),
the other real client of the supervisor in DESIGN.md's table: run with
output, exit code and stdin, a detached container with exec, logs and stop,
and a SIGKILL of the supervisor that dockerd and the container live through.

Both daemons run in one private mount namespace with a tmpfs over /run:
dockerd mounts each container's root filesystem itself, so the shims and
runc (children of skiff-containerd) must see its mounts."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from supervisor_daemon import DAEMON, IMAGE_TAR, _pids_with, require

SCRIPT = """set -e
mount -t tmpfs skiff-test-run /run
mkdir -p /run/containerd
start_supervisor() {{
    {daemon} -a {d}/c.sock --root {d}/croot --state {d}/cstate >> {d}/sup.log 2>&1 &
    echo $! > {d}/sup.pid
}}
start_supervisor
for i in $(seq 100); do [ -S {d}/c.sock ] && break; sleep 0.1; done
exec dockerd --containerd {d}/c.sock --data-root {d}/data --exec-root {d}/exec \\
    -H unix://{d}/d.sock --pidfile {d}/d.pid --bridge none --iptables=false \\
    --ip6tables=false >> {d}/dockerd.log 2>&1
"""


class Dockerd:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{tmp}/d.sock")
        self.env["PATH"] = f"{DAEMON.parent}:{os.environ.get('PATH', '/usr/sbin:/usr/bin')}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                SCRIPT.format(daemon=DAEMON, d=self.tmp),
            ],
            env=self.env,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited: {self.logs()}")
            if self.docker("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"dockerd did not come up: {self.logs()}")

    def logs(self) -> str:
        out = []
        for name in ("dockerd.log", "sup.log"):
            with contextlib.suppress(OSError):
                out.append(f"--- {name}\n" + (self.tmp / name).read_text()[-3000:])
        return "\n".join(out)

    def docker(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
        )
        if check and p.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} -> {p.returncode}: {p.stderr}{self.logs()}"
            )
        return p

    def supervisor_pid(self) -> int:
        return int((self.tmp / "sup.pid").read_text())

    def restart_supervisor(self) -> None:
        """A new skiff-containerd in dockerd's mount namespace."""
        dockerd = int((self.tmp / "d.pid").read_text())
        with open(self.tmp / "sup.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    "nsenter",
                    f"--mount=/proc/{dockerd}/ns/mnt",
                    str(DAEMON),
                    "-a",
                    f"{self.tmp}/c.sock",
                    "--root",
                    f"{self.tmp}/croot",
                    "--state",
                    f"{self.tmp}/cstate",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        (self.tmp / "sup.pid").write_text(str(proc.pid))

    def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
        if self.proc is not None:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int((self.tmp / "d.pid").read_text()), signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(OSError, ValueError):
            os.kill(self.supervisor_pid(), signal.SIGKILL)
        # shims and containers left by a failed test carry our paths
        for pid in _pids_with(str(self.tmp)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def dockerd() -> Iterator[Dockerd]:
    require()
    for tool in ("dockerd", "docker", "nsenter"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install docker.io)")
    tmp = Path(tempfile.mkdtemp(prefix="skcdockerd", dir="/tmp"))
    d = Dockerd(tmp)
    try:
        d.start()
        d.docker("load", "-i", str(IMAGE_TAR))
        yield d
    finally:
        d.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_dockerd_runs_containers_through_skiff_containerd(dockerd: Dockerd) -> None:
    p = dockerd.docker(
        "run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo hi; exit 3", check=False
    )
    assert (p.returncode, p.stdout.strip()) == (3, "hi")
    p = dockerd.docker("run", "--rm", "-i", "--network", "none", "busybox", "cat", input="in\n")
    assert p.stdout == "in\n"
    dockerd.docker(
        "run", "-d", "--name", "s1", "--network", "none", "busybox",
        "sh", "-c", "while true; do echo tick; sleep 0.2; done",
    )  # fmt: skip
    assert dockerd.docker("exec", "s1", "echo", "exec-ok").stdout.strip() == "exec-ok"
    time.sleep(0.5)
    assert "tick" in dockerd.docker("logs", "s1").stdout
    # the supervisor dies: the container keeps running, dockerd waits for
    # a new supervisor and carries on with it
    os.kill(dockerd.supervisor_pid(), signal.SIGKILL)
    time.sleep(1)
    assert dockerd.docker("inspect", "-f", "{{.State.Running}}", "s1").stdout.strip() == "true"
    dockerd.restart_supervisor()
    deadline = time.monotonic() + 30
    while True:
        p = dockerd.docker("exec", "s1", "echo", "again", check=False)
        if p.returncode == 0:
            break
        assert time.monotonic() < deadline, p.stderr + dockerd.logs()
        time.sleep(0.5)
    assert p.stdout.strip() == "again"
    dockerd.docker("stop", "-t", "1", "s1")
    assert dockerd.docker("inspect", "-f", "{{.State.Running}}", "s1").stdout.strip() == "false"
    dockerd.docker("rm", "s1")
