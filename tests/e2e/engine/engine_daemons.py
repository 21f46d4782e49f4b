"""Start Debian's containerd (or skiff-containerd) and skiffd on temporary roots
for the engine's end-to-end tests: the Engine API boundary of DESIGN.md, seen
by the real docker CLI and docker-py.

containerd runs in a private mount namespace with tmpfs over /run and /opt (it
and its shims write under /run/containerd); skiffd joins that namespace with
nsenter so it sees the same mounts. Sockets and roots live in a short temp dir.
Usable as a script too: `python engine_daemons.py DIR` starts both and waits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
VENV_BIN = REPO / ".venv" / "bin"
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"

CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""

PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 engine-run /run; "
    "mount -t tmpfs -o mode=755 engine-opt /opt; "
    'exec "$@"'
)


@dataclass
class Engine:
    base: Path
    containerd: subprocess.Popen[bytes] | None = None
    skiffd: subprocess.Popen[bytes] | None = None
    extra: list[int] = field(default_factory=list)
    managed: bool = False  # skiffd starts its own skiff-containerd

    @property
    def sock(self) -> Path:
        return self.base / "skiff.sock"

    @property
    def ctd_sock(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def data_root(self) -> Path:
        return self.base / "data"

    @property
    def exec_root(self) -> Path:
        return self.base / "exec"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["DOCKER_HOST"] = f"unix://{self.sock}"
        env["DOCKER_CONFIG"] = str(self.base / "docker-config")
        env.pop("DOCKER_CONTEXT", None)
        return env

    def start_containerd(self) -> None:
        config = self.base / "containerd.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(
                root=self.base / "ctd-root",
                state=self.base / "ctd-state",
                sock=self.ctd_sock,
                opt=self.base / "ctd-opt",
            )
        )
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        log = open(self.base / "containerd.log", "ab")  # noqa: SIM115
        self.containerd = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                PRELUDE,
                "sh",
                shutil.which("containerd") or "containerd",
                "--config",
                str(config),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        wait_for(self.ctd_sock, self.containerd, self.base / "containerd.log", 20)

    def start_holder(self) -> None:
        """A private mount namespace (tmpfs /run) for skiffd with a managed supervisor."""
        self.containerd = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                PRELUDE,
                "sh",
                "sleep",
                "infinity",
            ],
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.managed = True
        (self.base / "empty.json").write_text("{}")
        time.sleep(0.2)

    def start_skiffd(self, *extra_args: str) -> None:
        assert self.containerd is not None
        log = open(self.base / "skiffd.log", "ab")  # noqa: SIM115
        env = dict(os.environ)
        env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        if self.managed:
            supervisor = ["--config-file", str(self.base / "empty.json")]
        else:
            supervisor = ["--containerd", str(self.ctd_sock)]
        self.skiffd = subprocess.Popen(
            [
                "nsenter",
                f"--mount=/proc/{self.containerd.pid}/ns/mnt",
                str(VENV_BIN / "skiffd"),
                "-H",
                f"unix://{self.sock}",
                "--data-root",
                str(self.data_root),
                "--exec-root",
                str(self.exec_root),
                "--pidfile",
                str(self.base / "skiffd.pid"),
                *supervisor,
                "--log-level",
                "debug",
                "--bridge=none",  # no bridge or nft table in the host's network namespace
                *extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        log.close()
        wait_for(self.sock, self.skiffd, self.base / "skiffd.log", 20)
        self.wait_ping()

    def wait_ping(self, timeout: float = 20) -> None:
        import socket

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = s.recv(1000)
                s.close()
                if b" 200 " in data:
                    return
            time.sleep(0.05)
        raise AssertionError(f"skiffd did not answer /_ping:\n{self.log_tail()}")

    def kill_skiffd(self) -> None:
        if self.skiffd is not None and self.skiffd.poll() is None:
            self.skiffd.send_signal(signal.SIGKILL)
            self.skiffd.wait()
        with contextlib.suppress(FileNotFoundError):
            (self.base / "skiffd.pid").unlink()

    def log_tail(self, n: int = 4000) -> str:
        out = ""
        for name in ("skiffd.log", "containerd.log"):
            with contextlib.suppress(FileNotFoundError):
                out += f"--- {name} ---\n" + (self.base / name).read_text(errors="replace")[-n:]
        return out

    def docker(
        self, *args: str, timeout: float = 60, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
            )
        return res

    def container_ids(self) -> list[str]:
        try:
            return [p.name for p in (self.data_root / "containers").iterdir()]
        except OSError:
            return []

    def stop(self) -> None:
        """Remove the containers (the runtime deletes their cgroups), SIGTERM skiffd, then
        containerd; SIGKILL every process they left (shims too); remove leftover cgroups."""
        ids = self.container_ids()
        if ids and self.skiffd is not None and self.skiffd.poll() is None:
            with contextlib.suppress(Exception):
                self.docker("rm", "-f", *ids, check=False, timeout=60)
        procs = [p for p in (self.skiffd, self.containerd) if p is not None]
        tree: list[int] = []
        for p in procs:
            tree += descendants(p.pid)
        tree += shim_pids(self.base)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        for pid in [*tree, *self.extra]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        for cid in ids:
            for cg in Path("/sys/fs/cgroup").glob(f"*/skiff/{cid}"):
                with contextlib.suppress(OSError):
                    cg.rmdir()


def wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"daemon exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear in {timeout}s:\n{log.read_text()[-4000:]}")


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry.name))
    return kids


def descendants(pid: int) -> list[int]:
    out = []
    for kid in children_of(pid):
        out.append(kid)
        out.extend(descendants(kid))
    return out


def shim_pids(base: Path) -> list[int]:
    """Shims (and their containers) started for this engine: their command line names our
    containerd socket, or they are children of such a shim."""
    found = []
    needle = str(base).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if (
            b"containerd-shim" in cmd or b"skiff-containerd" in cmd or b"skiff-shim" in cmd
        ) and needle in cmd:
            pid = int(entry.name)
            found.append(pid)
            found += descendants(pid)
    return found


def unmount_under(d: Path) -> None:
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(d) or target.startswith(f"{d}/"):
            targets.append(target)
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False, capture_output=True)


def new_base() -> Path:
    d = Path(tempfile.mkdtemp(prefix="skd-"))
    d.chmod(0o755)
    return d


def cleanup_base(d: Path) -> None:
    unmount_under(d)
    # cgroups the containers left behind (v1 controllers, our /skiff parent)
    shutil.rmtree(d, ignore_errors=True)


def load_busybox(engine: Engine) -> None:
    """The busybox test image into the engine: /images/load when the engine has it,
    else imported into the supervisor's moby namespace with ctr."""
    res = engine.docker("load", "-i", str(BUSYBOX_TAR), check=False, timeout=120)
    if res.returncode == 0:
        return
    assert engine.containerd is not None
    subprocess.run(
        [
            "nsenter",
            f"--mount=/proc/{engine.containerd.pid}/ns/mnt",
            "ctr",
            "-a",
            str(engine.ctd_sock),
            "-n",
            "moby",
            "images",
            "import",
            "--all-platforms",
            str(BUSYBOX_TAR),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


if __name__ == "__main__":
    base = Path(sys.argv[1]) if len(sys.argv) > 1 else new_base()
    base.mkdir(parents=True, exist_ok=True)
    eng = Engine(base)
    eng.start_containerd()
    eng.start_skiffd()
    load_busybox(eng)
    print(f"export DOCKER_HOST=unix://{eng.sock}", flush=True)
    try:
        signal.pause()
    finally:
        eng.stop()
