"""Image builds: skiffd's classic builder (with its managed skiff-containerd,
RUN steps in our shim and skiff-runc) beside Debian's dockerd classic
builder (with its own containerd and runc), the same docker CLI
(DOCKER_BUILDKIT=0) building the same 10-step Dockerfile over the same
context (a few MB in several COPY steps, three RUN steps), in one run.

Each daemon runs on temporary roots in a private mount namespace (tmpfs
over /run, /opt and /etc/docker); dockerd with --bridge=none
--iptables=false. Rounds alternate the order of the daemons.

  cold   `docker build --no-cache`: every step executed
  warm   `docker build` right after: every step from the cache
  api    the same two as `POST /build` with a tar made beforehand, timed
         from the request to the end of the response: the daemon's share,
         without the CLI's start, context walk and tar (~100 ms here)

Usage (as root): python bench/build.py [--runs 7] [--mib 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemons import stop, unmount_under

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"

PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 bench-run /run; "
    "mount -t tmpfs -o mode=755 bench-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 bench-etc /etc/docker; fi; "
)

DOCKERFILE = """\
FROM busybox
ENV APP=/app
WORKDIR /app
COPY data/ /app/data/
RUN find /app/data -type f | wc -l > /app/count && cat /app/count
COPY src/ /app/src/
RUN cat /app/src/* > /app/all.txt && md5sum /app/all.txt > /app/sum
COPY big.bin /app/big.bin
RUN cp /app/big.bin /app/big2.bin && ls -l /app
CMD ["cat", "/app/sum"]
"""


@dataclass
class Daemon:
    name: str
    sock: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def docker(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_BUILDKIT": "0"}
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run(
            [DOCKER, *args], env=env, capture_output=True, timeout=timeout, check=False
        )

    def must(self, *args: str) -> str:
        r = self.docker(*args)
        if r.returncode != 0:
            raise RuntimeError(
                f"{self.name}: docker {' '.join(args)}: {r.stdout.decode()[-2000:]}"
                f"{r.stderr.decode()}\n{self.log.read_text(errors='replace')[-3000:]}"
            )
        return r.stdout.decode()


def naming(needle: str) -> list[int]:
    """Processes whose command line names `needle` (shims that left the tree)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if needle.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def start(name: str, argv: list[str], base: Path, sock: Path) -> Iterator[Daemon]:
    log = base / f"{name}.log"
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             PRELUDE + 'exec "$@"', "sh", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            env=env, start_new_session=True,
        )  # fmt: skip
    daemon = Daemon(name, sock, proc, log)
    try:
        deadline = time.monotonic() + 60
        while daemon.docker("version").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield daemon
    finally:
        stop(proc)
        for pid in naming(str(base)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def post_build(sock: Path, body: bytes, query: str) -> float:
    """POST /build over the unix socket; seconds to the end of the response."""
    t0 = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as c:
        c.connect(str(sock))
        c.sendall(
            f"POST /v1.41/build?{query} HTTP/1.1\r\nHost: d\r\n"
            f"Content-Type: application/x-tar\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        c.sendall(body)
        data = bytearray()
        try:
            while chunk := c.recv(1 << 16):
                data += chunk
        except ConnectionResetError as e:
            # dockerd may reset a `Connection: close` socket once it has answered
            if not data.endswith(b"0\r\n\r\n"):
                raise RuntimeError(f"{sock}: {e} after {bytes(data[-1000:])!r}") from None
    elapsed = time.perf_counter() - t0
    if b'"errorDetail"' in data or b"Successfully built" not in data:
        raise RuntimeError(f"POST /build?{query}: {bytes(data[-2000:]).decode(errors='replace')}")
    return elapsed


def context_tar(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root)), recursive=False)
    return buf.getvalue()


def make_context(root: Path, mib: int) -> None:
    """`mib` MiB of incompressible data: half in 32 files under data/, half in big.bin,
    and 20 small source files."""
    rng = random.Random(7)
    (root / "Dockerfile").write_text(DOCKERFILE)
    data = root / "data"
    data.mkdir()
    half = mib * 1024 * 1024 // 2
    for i in range(32):
        (data / f"blob-{i:02}.bin").write_bytes(rng.randbytes(half // 32))
    src = root / "src"
    src.mkdir()
    for i in range(20):
        (src / f"mod{i}.py").write_text(f"# module {i}\n" + "x = 1\n" * 200)
    (root / "big.bin").write_bytes(rng.randbytes(half))


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--mib", type=int, default=4, help="size of the context's data")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/build.py starts daemons and needs root", file=sys.stderr)
        return 1
    if not BUSYBOX_TAR.exists():
        print(f"{BUSYBOX_TAR} is missing: run `make images`", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="bench-build-"))
    base.chmod(0o755)
    ctx = base / "context"
    ctx.mkdir()
    make_context(ctx, args.mib)
    body = context_tar(ctx)
    (base / "empty.json").write_text("{}")
    times: dict[str, dict[str, list[float]]] = {}
    try:
        with contextlib.ExitStack() as stack:
            skiffd = stack.enter_context(
                start(
                    "skiffd",
                    [
                        str(VENV_BIN / "skiffd"),
                        "-H", f"unix://{base}/skiff.sock",
                        "--data-root", f"{base}/skiffd-data",
                        "--exec-root", f"{base}/skiffd-exec",
                        "--pidfile", f"{base}/skiffd.pid",
                        "--config-file", str(base / "empty.json"),
                        "--bridge=none",
                    ],
                    base,
                    base / "skiff.sock",
                )
            )  # fmt: skip
            dockerd = stack.enter_context(
                start(
                    "dockerd",
                    [
                        DOCKERD,
                        "-H", f"unix://{base}/docker.sock",
                        "--data-root", f"{base}/dockerd-data",
                        "--exec-root", f"{base}/dockerd-exec",
                        "--pidfile", f"{base}/dockerd.pid",
                        "--config-file", str(base / "empty.json"),
                        "--bridge=none", "--iptables=false", "--ip6tables=false",
                    ],
                    base,
                    base / "docker.sock",
                )
            )  # fmt: skip
            daemons = [skiffd, dockerd]
            for d in daemons:
                d.must("load", "-i", str(BUSYBOX_TAR))
                d.must("build", "-q", str(ctx))  # warm-up: first-use costs stay out
                times[d.name] = {"cold": [], "warm": [], "api-cold": [], "api-warm": []}
            for i in range(args.runs):
                for d in daemons if i % 2 == 0 else list(reversed(daemons)):
                    t0 = time.perf_counter()
                    out = d.must("build", "--no-cache", "-t", "bench/build:cold", str(ctx))
                    times[d.name]["cold"].append(time.perf_counter() - t0)
                    assert "Using cache" not in out, out
                    t0 = time.perf_counter()
                    out = d.must("build", "-t", "bench/build:warm", str(ctx))
                    times[d.name]["warm"].append(time.perf_counter() - t0)
                    assert out.count("Using cache") == 9, out
                    times[d.name]["api-cold"].append(post_build(d.sock, body, "nocache=1&t=b:1"))
                    times[d.name]["api-warm"].append(post_build(d.sock, body, "t=b:2"))
            for d in daemons:
                got = d.must("run", "--rm", "--network", "none", "bench/build:warm")
                assert got.endswith("/app/all.txt\n"), got
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    figures = {
        name: {kind: statistics.median(v) * 1000 for kind, v in per.items()}
        for name, per in times.items()
    }
    best = {name: {kind: min(v) * 1000 for kind, v in per.items()} for name, per in times.items()}
    s, k = figures["skiffd"], figures["dockerd"]
    bs, bk = best["skiffd"], best["dockerd"]
    print(f"10-step Dockerfile, {args.mib} MiB context, {args.runs} runs: medians (and best)")
    print(f"{'':22}{'skiffd':>16}{'dockerd':>16}{'ratio':>13}")
    for kind, label in (
        ("cold", "cold --no-cache (ms)"),
        ("warm", "warm, cached (ms)"),
        ("api-cold", "API cold (ms)"),
        ("api-warm", "API warm (ms)"),
    ):
        print(
            f"{label:22}{s[kind]:9.0f} ({bs[kind]:4.0f}){k[kind]:9.0f} ({bk[kind]:4.0f})"
            f"{s[kind] / k[kind]:6.2f} ({bs[kind] / bk[kind]:4.2f})"
        )
    print("targets: cold ratio <= 1.0, warm ratio <= 0.5")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"median_ms": figures, "best_ms": best, "raw_s": times}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
