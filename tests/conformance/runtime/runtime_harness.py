"""Black-box OCI runtime conformance suite: the harness (bundles, the runtime CLI, probes).

Sits below every layer of DESIGN.md: it drives an OCI runtime binary (skiff-runc,
runc, crun) only through its command line and checks the result from inside the
container. `RUNTIME=runc` runs the same tests against the reference, which is how
the tests themselves are checked.
"""

from __future__ import annotations

import array
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[3]
IMAGE_LAYOUT = REPO / "build" / "images" / "busybox-oci"
CGROUP_ROOT = Path("/sys/fs/cgroup")
CALL_TIMEOUT = 30.0

# runc 1.1's `spec` defaults, which the issue requires skiff-runc's `spec` to match.
DEFAULT_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
DEFAULT_READONLY_PATHS = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]
DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def resolve_runtime() -> str:
    """The runtime under test: $RUNTIME (a path or a name on PATH), else the repo's skiff-runc."""
    name = os.environ.get("RUNTIME", "")
    if not name:
        return str(REPO / ".venv" / "bin" / "skiff-runc")
    if os.sep in name:
        return str(Path(name).resolve())
    found = shutil.which(name)
    return found if found else name


RUNTIME_BIN = resolve_runtime()
RUNTIME_NAME = Path(RUNTIME_BIN).name


@functools.cache
def runtime_version() -> tuple[int, ...]:
    """The runtime's `--version` as a tuple, () when it does not say."""
    try:
        out = subprocess.run(
            [RUNTIME_BIN, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except OSError:
        return ()
    for word in out.split():
        parts = word.split("+")[0].split("-")[0].split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts):
            return tuple(int(p) for p in parts)
    return ()


def default_config(args: list[str] | None = None, *, terminal: bool = False) -> dict[str, Any]:
    """A config.json close to `runc spec`: same mounts, namespaces, caps, masked paths.

    Differences on purpose: terminal defaults to false (tests read stdout through
    pipes) and the root is writable (each bundle has its own copy of the rootfs).
    """
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": terminal,
            "user": {"uid": 0, "gid": 0},
            "args": list(args or ["sh"]),
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(DEFAULT_CAPS),
                "effective": list(DEFAULT_CAPS),
                "permitted": list(DEFAULT_CAPS),
                "ambient": list(DEFAULT_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }


def new_id(prefix: str = "ct") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Bundle:
    """A bundle directory: its own copy of the busybox rootfs plus a config dict."""

    def __init__(self, path: Path, rootfs_src: Path, args: list[str] | None) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.id = new_id()
        self.config = default_config(args)
        # A relative cgroupsPath nests the container under the runner's own cgroup
        # (runc's reading of the spec), and the id makes it findable and unique.
        self.config["linux"]["cgroupsPath"] = f"conformance-{self.id}"
        path.mkdir(parents=True)
        subprocess.run(["cp", "-a", str(rootfs_src), str(self.rootfs)], check=True)

    @property
    def process(self) -> dict[str, Any]:
        proc: dict[str, Any] = self.config["process"]
        return proc

    @property
    def linux(self) -> dict[str, Any]:
        lx: dict[str, Any] = self.config["linux"]
        return lx

    def set_args(self, *args: str) -> None:
        self.process["args"] = list(args)

    def shell(self, script: str) -> None:
        self.process["args"] = ["sh", "-c", script]

    def set_namespace(self, ns_type: str, path: str | None = None) -> None:
        nss = [n for n in self.linux["namespaces"] if n["type"] != ns_type]
        entry: dict[str, str] = {"type": ns_type}
        if path is not None:
            entry["path"] = path
        nss.append(entry)
        self.linux["namespaces"] = nss

    def drop_namespace(self, ns_type: str) -> None:
        self.linux["namespaces"] = [n for n in self.linux["namespaces"] if n["type"] != ns_type]

    def add_mount(self, destination: str, type_: str, source: str, options: list[str]) -> None:
        self.config["mounts"].append(
            {"destination": destination, "type": type_, "source": source, "options": options}
        )

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=2))


class Runtime:
    """The runtime binary under test, with a private --root, and everything to clean up."""

    def __init__(self, binary: str, root: Path, workdir: Path) -> None:
        self.binary = binary
        self.root = root
        self.workdir = workdir
        self.ids: set[str] = set()
        self.pids: set[int] = set()

    def __call__(
        self,
        *args: str,
        stdin: Any = subprocess.DEVNULL,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        pass_fds: tuple[int, ...] = (),
        timeout: float = CALL_TIMEOUT,
        input: str | None = None,
        fd_map: dict[int, int] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """fd_map {child_fd: our_fd} places descriptors at fixed numbers in the runtime
        (for --preserve-fds) without disturbing ours."""
        if input is not None:
            stdin = None
        preexec = None
        if fd_map:
            mapping = dict(fd_map)
            pass_fds = tuple(pass_fds) + tuple(mapping)

            def preexec() -> None:
                for child_fd, our_fd in mapping.items():
                    os.dup2(our_fd, child_fd)

        return subprocess.run(
            [self.binary, "--root", str(self.root), *args],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=pass_fds,
            preexec_fn=preexec,
            timeout=timeout,
            text=True,
            input=input,
            check=False,
        )

    def ok(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        res = self(*args, **kw)
        assert res.returncode == 0, (
            f"{RUNTIME_NAME} {' '.join(args)} exited {res.returncode}\n"
            f"stdout: {res.stdout}\nstderr: {res.stderr}"
        )
        return res

    def _track(self, cid: str) -> None:
        self.ids.add(cid)

    def run(
        self, bundle: Bundle, *extra: str, cid: str | None = None, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """`run` in the foreground: the container's stdout/stderr come back in the result."""
        bundle.write()
        cid = cid or bundle.id
        self._track(cid)
        return self("run", "--bundle", str(bundle.path), *extra, cid, **kw)

    def run_ok(self, bundle: Bundle, *extra: str, **kw: Any) -> str:
        res = self.run(bundle, *extra, **kw)
        assert res.returncode == 0, (
            f"{RUNTIME_NAME} run exited {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
        )
        return res.stdout

    def create(
        self, bundle: Bundle, *extra: str, cid: str | None = None, check: bool = True, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """`create`, with the container's stdio on files in the bundle (never our pipes,
        which the waiting init would hold open)."""
        bundle.write()
        cid = cid or bundle.id
        self._track(cid)
        with (
            open(bundle.path / "ct.stdout", "ab") as out,
            open(bundle.path / "ct.stderr", "ab") as err,
        ):
            res = self(
                "create", "--bundle", str(bundle.path), *extra, cid, stdout=out, stderr=err, **kw
            )
        res.stdout = (bundle.path / "ct.stdout").read_text()
        res.stderr = (bundle.path / "ct.stderr").read_text()
        if check:
            assert res.returncode == 0, (
                f"{RUNTIME_NAME} create exited {res.returncode}\n{res.stderr}"
            )
            with contextlib.suppress(Exception):
                self.pids.add(self.state(cid)["pid"])
        return res

    def run_detached(
        self, bundle: Bundle, *extra: str, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        bundle.write()
        self._track(bundle.id)
        with (
            open(bundle.path / "ct.stdout", "ab") as out,
            open(bundle.path / "ct.stderr", "ab") as err,
        ):
            res = self(
                "run", "-d", "--bundle", str(bundle.path), *extra, bundle.id, stdout=out,
                stderr=err, **kw,
            )  # fmt: skip
        assert res.returncode == 0, (
            f"{RUNTIME_NAME} run -d exited {res.returncode}\n"
            + (bundle.path / "ct.stderr").read_text()
        )
        with contextlib.suppress(Exception):
            self.pids.add(self.state(bundle.id)["pid"])
        return res

    def start_running(self, bundle: Bundle, script: str = "sleep 1000") -> int:
        """create + start a long-lived container; returns its init's host pid."""
        bundle.shell(script)
        self.create(bundle)
        self.ok("start", bundle.id)
        st = self.wait_status(bundle.id, "running")
        pid: int = st["pid"]
        return pid

    def state(self, cid: str) -> dict[str, Any]:
        res = self.ok("state", cid)
        data: dict[str, Any] = json.loads(res.stdout)
        return data

    def wait_status(self, cid: str, status: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.state(cid)
            if st["status"] == status:
                return st
            time.sleep(0.02)
        raise AssertionError(f"container {cid} never reached {status}: last state {st}")

    def exec(
        self, cid: str, *cmd: str, opts: tuple[str, ...] = (), **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        return self("exec", *opts, cid, *cmd, **kw)

    def cleanup(self) -> None:
        for cid in sorted(self.ids):
            with contextlib.suppress(Exception):
                self("delete", "--force", cid, timeout=15)
        # Belt and braces: a runtime that failed to delete must still not leave our
        # containers running on the host (these pids are processes this test made).
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- helpers


def extract_busybox_rootfs(dest: Path) -> None:
    """Unpack the single layer of build/images/busybox-oci into dest."""
    index = json.loads((IMAGE_LAYOUT / "index.json").read_text())
    desc = index["manifests"][0]

    def blob(d: dict[str, Any]) -> Path:
        algo, hexdigest = d["digest"].split(":", 1)
        return IMAGE_LAYOUT / "blobs" / algo / hexdigest

    manifest = json.loads(blob(desc).read_text())
    while "manifests" in manifest:  # an index inside the index: take the first platform
        manifest = json.loads(blob(manifest["manifests"][0]).read_text())
    layers = manifest["layers"]
    assert len(layers) == 1, f"expected a single-layer busybox image, got {len(layers)} layers"
    dest.mkdir(parents=True)
    with tarfile.open(blob(layers[0]), mode="r:*") as tar:
        # Our own deterministic image: keep modes (/tmp 1777) and owners as they are.
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(dest, filter="fully_trusted")
        else:  # pragma: no cover - python < 3.11.4
            tar.extractall(dest)


def host_ns(ns_type: str, pid: int | str = "self") -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns_type}")


def cgroup_dirs_named(fragment: str) -> list[Path]:
    """Every cgroup directory (any hierarchy) whose name contains fragment."""
    found: list[Path] = []
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(hierarchy):
            for d in dirnames:
                if fragment in d:
                    found.append(Path(dirpath) / d)
    return found


def container_cgroup(pid: int, controller: str) -> Path:
    """The host directory of pid's cgroup in a v1 controller hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctrls, path = line.split(":", 2)
        if controller in ctrls.split(","):
            return CGROUP_ROOT / controller / path.lstrip("/")
    raise AssertionError(f"pid {pid} has no {controller} cgroup")


def mounts_mentioning(fragment: str) -> list[str]:
    return [
        line for line in Path("/proc/self/mountinfo").read_text().splitlines() if fragment in line
    ]


def processes_mentioning(fragment: str) -> list[int]:
    """Host processes whose command line or root directory mentions fragment."""
    hits = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            root = os.readlink(entry / "root")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if fragment in cmd or fragment in root:
            hits.append(int(entry.name))
    return hits


def v1_controller(name: str) -> bool:
    return (CGROUP_ROOT / name).is_dir() and not (CGROUP_ROOT / "cgroup.controllers").exists()


def wait_for(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ConsoleReceiver:
    """The other end of --console-socket: a unix socket that receives one pty master
    over SCM_RIGHTS (as runc sends it), then reads everything from the master."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(CALL_TIMEOUT)
        self.master: int | None = None
        self.output = bytearray()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                fds = array.array("i")
                _, ancdata, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(fds.itemsize * 4))
                for level, kind, data in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
                assert len(fds) >= 1, "no file descriptor arrived over the console socket"
                self.master = fds[0]
                for extra in fds[1:]:
                    os.close(extra)
            while True:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:  # EIO once the last slave closes
                    break
                if not chunk:
                    break
                self.output.extend(chunk)
        except BaseException as exc:  # reported by wait()
            self.error = exc

    def write(self, data: bytes) -> None:
        assert self.master is not None
        os.write(self.master, data)

    def wait_master(self, timeout: float = 10.0) -> int:
        wait_for(lambda: self.master is not None or self.error is not None, timeout, "pty master")
        if self.error:
            raise self.error
        assert self.master is not None
        return self.master

    def wait_output(self, needle: bytes, timeout: float = 10.0) -> bytes:
        wait_for(lambda: needle in self.output or self.error is not None, timeout, f"{needle!r}")
        return bytes(self.output)

    def close(self) -> None:
        self.sock.close()
        if self.master is not None:
            with contextlib.suppress(OSError):
                os.close(self.master)
        self._thread.join(timeout=2)
