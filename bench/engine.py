"""The engine end to end: skiffd (with its managed skiff-containerd) beside
Debian's dockerd (with its own containerd), driven by the same docker CLI
on the same busybox image, in one run.

The Engine API boundary of DESIGN.md measured from the client: each daemon
runs on temporary roots in a private mount namespace (tmpfs over /run, /opt
and /etc/docker), dockerd with --bridge=none --iptables=false.

  run        `docker run --rm --network none busybox true`, rounds
             interleaved between the daemons, median and p90 latency
  parallel   50 `docker run -d --network none busybox sleep 60`, 10 at a
             time: containers started per second
  idle RSS   the daemons' resident memory (dockerd + containerd; skiffd +
             skiff-containerd) once every container is gone

Usage (as root): python bench/engine.py [--runs 20] [--parallel 50] [--jobs 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemons import descendants, stop, unmount_under

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
SKIFFD = str(REPO / ".venv" / "bin" / "skiffd")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"

PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 bench-run /run; "
    "mount -t tmpfs -o mode=755 bench-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 bench-etc /etc/docker; fi; "
)


@dataclass
class Daemon:
    name: str
    sock: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def docker(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}"}
        env.pop("DOCKER_CONTEXT", None)
        return subprocess.run(
            [DOCKER, *args], env=env, capture_output=True, timeout=timeout, check=False
        )

    def must(self, *args: str) -> str:
        r = self.docker(*args)
        if r.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {r.stderr.decode()}")
        return r.stdout.decode()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@contextlib.contextmanager
def start(name: str, argv: list[str], base: Path, sock: Path) -> Iterator[Daemon]:
    log = base / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             PRELUDE + 'exec "$@"', "sh", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
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


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.9 + 0.5) - 1)]


def idle_rss(d: Daemon) -> tuple[int, str]:
    """The daemon and every process it keeps (no container is left by now)."""
    pids = [d.proc.pid, *descendants(d.proc.pid)]
    parts = [(comm(p), rss_kib(p)) for p in pids]
    parts = [(c, r) for c, r in parts if r]
    return sum(r for _, r in parts), " + ".join(f"{c} {r / 1024:.0f}" for c, r in parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--parallel", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/engine.py starts daemons and needs root", file=sys.stderr)
        return 1
    if not BUSYBOX_TAR.exists():
        print(f"{BUSYBOX_TAR} is missing: run `make images`", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    base.chmod(0o755)
    results: dict[str, dict[str, float | str]] = {}
    try:
        with contextlib.ExitStack() as stack:
            skiffd = stack.enter_context(
                start(
                    "skiffd",
                    [
                        SKIFFD,
                        "-H", f"unix://{base}/skiff.sock",
                        "--data-root", f"{base}/skiffd-data",
                        "--exec-root", f"{base}/skiffd-exec",
                        "--pidfile", f"{base}/skiffd.pid",
                        "--config-file", str(_empty_config(base)),
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
                        "--config-file", str(_empty_config(base)),
                        "--bridge=none", "--iptables=false", "--ip6tables=false",
                    ],
                    base,
                    base / "docker.sock",
                )
            )  # fmt: skip
            daemons = [skiffd, dockerd]
            for d in daemons:
                d.must("load", "-i", str(BUSYBOX_TAR))
                results[d.name] = {}
            run = ["run", "--rm", "--network", "none", "busybox", "true"]
            times: dict[str, list[float]] = {d.name: [] for d in daemons}
            for i in range(args.warmup + args.runs):
                order = daemons if i % 2 == 0 else list(reversed(daemons))
                for d in order:
                    t0 = time.perf_counter()
                    d.must(*run)
                    if i >= args.warmup:
                        times[d.name].append(time.perf_counter() - t0)
            for d in daemons:
                results[d.name]["run_median_ms"] = statistics.median(times[d.name]) * 1000
                results[d.name]["run_p90_ms"] = p90(times[d.name]) * 1000
            for d in daemons:
                names = [f"bench-{i}" for i in range(args.parallel)]
                t0 = time.perf_counter()
                with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                    for out in pool.map(
                        lambda n, d=d: d.must(
                            "run", "-d", "--network", "none", "--name", n, "busybox", "sleep", "60"
                        ),
                        names,
                    ):
                        assert out.strip()
                elapsed = time.perf_counter() - t0
                running = d.must("ps", "-q").split()
                results[d.name]["parallel_per_s"] = args.parallel / elapsed
                results[d.name]["parallel_running"] = len(running)
                d.must("rm", "-f", *names)
            time.sleep(3)  # let shims exit and the daemons settle
            for d in daemons:
                total, detail = idle_rss(d)
                results[d.name]["idle_rss_mib"] = total / 1024
                results[d.name]["idle_rss_detail"] = detail
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    s, k = results["skiffd"], results["dockerd"]
    print(f"{'':28}{'skiffd':>14}{'dockerd':>14}{'ratio':>9}")
    for key, label in (
        ("run_median_ms", "run --rm median (ms)"),
        ("run_p90_ms", "run --rm p90 (ms)"),
        ("parallel_per_s", f"run -d x{args.parallel}/{args.jobs} (1/s)"),
        ("idle_rss_mib", "idle RSS (MiB)"),
    ):
        a, b = float(s[key]), float(k[key])
        print(f"{label:28}{a:14.1f}{b:14.1f}{a / b:9.2f}")
    print(f"idle skiffd: {s['idle_rss_detail']}")
    print(f"idle dockerd: {k['idle_rss_detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _empty_config(base: Path) -> Path:
    path = base / "empty-daemon.json"
    path.write_text("{}")
    return path


if __name__ == "__main__":
    sys.exit(main())
