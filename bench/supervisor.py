"""The supervisor layer side by side: skiff-containerd beside Debian's containerd 1.6.

The middle of DESIGN.md's layer diagram, measured from the outside through
the containerd gRPC API only, both daemons in the same run:

- `run --rm busybox true` latency: `ctr` against containerd (the reference),
  `skiff-ctr` against skiff-containerd with runc's shim and with ours, and
  `ctr` against skiff-containerd (the supervisor alone, same client);
  interleaved rounds, median and p90 and the ratio to the reference;
- shim memory: Pss and RSS (/proc/PID/smaps_rollup) per shim for N running
  containers, skiff-shim against containerd-shim-runc-v2;
- daemon memory: RSS and Pss of each daemon idle (after `version` and
  `images ls`, before any work), after the runs, and with the N
  containers of the shim measurement running.

Each daemon runs in a private mount namespace with a tmpfs over /run (the
runc shim and runc put their state under /run/containerd whatever the
daemon's paths) and a temporary root, state and socket; the busybox image
is imported into each first. Nothing outside the temporary directory is
touched, and everything started is stopped by PID at the end.

Usage (as root): python bench/supervisor.py [--runs 20] [--warmup 3] [--shims 10]
    [--grpc-server h2|grpcio] [--compare-grpcio] [--baseline-ctr PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_TAR = REPO / "build" / "images" / "busybox.tar"
IMAGE = "docker.io/library/busybox:latest"
BIN = Path(sys.executable).parent
NAMESPACE = "bench"

CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{address}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""

# Runs in the new mount namespace before the daemon is exec'd (so the
# daemon keeps unshare's pid): /run becomes private scratch space.
PRIVATE_RUN = 'mount -t tmpfs -o mode=0755 bench-run /run && mkdir -p /run/containerd && exec "$@"'


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Timings:
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        # nearest rank: no interpolation between two runs
        return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


def rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        values[key] = int(value.split()[0])
    return values


def pids_with(*needles: bytes) -> list[int]:
    """Processes whose argv holds every needle (our shims carry the daemon's
    socket path, which is unique to this run)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if all(n in cmdline for n in needles):
            out.append(int(entry))
    return out


# --- the daemons -------------------------------------------------------------------------


class Daemon:
    """One supervisor in a private mount namespace under `tmp/name`."""

    def __init__(self, name: str, tmp: Path, argv: list[str], ctr: list[str]) -> None:
        self.name = name
        self.dir = tmp / name
        self.dir.mkdir()
        self.address = str(self.dir / "c.sock")
        self.fifo = self.dir / "fifo"
        self.fifo.mkdir()
        self.argv = argv
        self.ctr_argv = ctr
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.dir / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    PRIVATE_RUN,
                    "sh",
                    *self.argv,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bench: {self.name} exited: {self.log_tail()}")
            if os.path.exists(self.address) and self.ctr("version", check=False) == 0:
                return
            time.sleep(0.05)
        raise SystemExit(f"bench: {self.name} did not come up: {self.log_tail()}")

    def log_tail(self) -> str:
        return (self.dir / "daemon.log").read_text(errors="replace")[-2000:]

    def ctr(self, *args: str, check: bool = True, client: Sequence[str] | None = None) -> int:
        argv = [*(client or self.ctr_argv), "-a", self.address, "-n", NAMESPACE, *args]
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        if check and proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)}: exit {proc.returncode}: "
                f"{proc.stderr.decode(errors='replace').strip()[-500:]}"
            )
        return proc.returncode

    def memory(self) -> tuple[float, float]:
        """(RSS, Pss) of the daemon in MB."""
        assert self.proc is not None
        r = rollup(self.proc.pid)
        return r["Rss"] / 1024, r["Pss"] / 1024

    def stop(self) -> None:
        """Remove what is left in our namespace, stop the daemon, then end
        any shim of ours that outlived it (by pid)."""
        if self.proc is not None and self.proc.poll() is None:
            out = subprocess.run(
                [*self.ctr_argv, "-a", self.address, "-n", NAMESPACE, "tasks", "ls", "-q"],
                capture_output=True,
                text=True,
            ).stdout.split()

            def remove(cid: str) -> None:
                self.ctr("tasks", "rm", "-f", cid, check=False)
                self.ctr("containers", "rm", cid, check=False)

            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(remove, out))
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in pids_with(self.address.encode()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# --- the three measurements ---------------------------------------------------------------


@dataclass
class Variant:
    label: str
    daemon: Daemon
    client: list[str]
    runtime: str
    timings: Timings = field(default_factory=Timings)

    def run_rm(self, cid: str) -> float:
        start = time.perf_counter()
        self.daemon.ctr(
            "run",
            "--rm",
            "--fifo-dir",
            str(self.daemon.fifo),
            "--runtime",
            self.runtime,
            IMAGE,
            cid,
            "true",
            client=self.client,
        )
        return time.perf_counter() - start


def latency(variants: list[Variant], runs: int, warmup: int) -> None:
    for r in range(warmup + runs):
        # a rotating order, so a burst of load on a shared machine hits all alike
        for k in range(len(variants)):
            v = variants[(r + k) % len(variants)]
            took = v.run_rm(f"run-{k}-{r}")
            if r >= warmup:
                v.timings.samples.append(took)


def shim_memory(
    daemon: Daemon, client: list[str], runtime: str, binary: bytes, n: int
) -> tuple[int, float, float, float]:
    """Mean (Pss, RSS) per shim in MB with n `sleep` containers, and the
    total Pss of every process of that shim binary (a template included)
    divided by n."""

    def run(i: int) -> None:
        daemon.ctr(
            "run",
            "-d",
            "--fifo-dir",
            str(daemon.fifo),
            "--runtime",
            runtime,
            IMAGE,
            f"mem-{i}",
            "sleep",
            "1000",
            client=client,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(run, range(n)))
    time.sleep(1.5)
    assert daemon.proc is not None
    pids = [p for p in pids_with(b"shim", daemon.address.encode()) if p != daemon.proc.pid]
    stats = [rollup(p) for p in pids if _is_shim(p, binary)]
    helpers = [rollup(p) for p in pids if not _is_shim(p, binary)]
    pss = statistics.mean(s["Pss"] for s in stats) / 1024
    rss = statistics.mean(s["Rss"] for s in stats) / 1024
    total = (sum(s["Pss"] for s in stats) + sum(s["Pss"] for s in helpers)) / 1024 / n
    return len(stats), pss, rss, total


def _is_shim(pid: int, binary: bytes) -> bool:
    """A shim process proper (argv[0] or the script argv[1] is the binary)
    rather than a helper such as a template the shims fork from."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return any(a.endswith(binary) for a in argv[:2]) and b"-id" in argv


# --- main --------------------------------------------------------------------------------


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--shims", type=int, default=10)
    p.add_argument("--image", default=str(IMAGE_TAR))
    p.add_argument(
        "--compare-grpcio",
        action="store_true",
        help="also run a skiff-containerd on grpcio's server, measured with ctr",
    )
    p.add_argument(
        "--baseline-ctr",
        default="",
        metavar="PATH",
        help="another skiff-ctr (an older checkout's launcher, say) measured against "
        "skiff-containerd in the same rounds, for before/after figures",
    )
    p.add_argument(
        "--grpc-server",
        choices=["h2", "grpcio"],
        help="skiff-containerd's gRPC server (default: its own default)",
    )
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench: must run as root", file=sys.stderr)
        return 2
    for tool in ("containerd", "ctr", "containerd-shim-runc-v2", "runc", "unshare"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is not installed", file=sys.stderr)
            return 2
    if not Path(args.image).exists():
        print(f"bench: no image at {args.image}; run `make images`", file=sys.stderr)
        return 2

    # byte-compile skiff as an installed wheel would be: with
    # PYTHONDONTWRITEBYTECODE set, every skiff-ctr would compile from source
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "skiff")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    tmp = Path(tempfile.mkdtemp(prefix="bsup", dir="/tmp"))
    env = dict(os.environ)
    # both daemons find their shims on PATH (ours looks beside its Python first)
    env["PATH"] = f"{BIN}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    ctr = ["ctr"]
    skiff_ctr = [str(BIN / "skiff-ctr")]
    cd = Daemon("containerd", tmp, [], ctr)
    (cd.dir / "config.toml").write_text(
        CONTAINERD_CONFIG.format(
            root=cd.dir / "root", state=cd.dir / "state", address=cd.address, opt=cd.dir / "opt"
        )
    )
    cd.argv = ["containerd", "--config", str(cd.dir / "config.toml")]

    def skiff_daemon(name: str, server: str | None) -> Daemon:
        d = Daemon(name, tmp, [], skiff_ctr)
        d.argv = [
            str(BIN / "skiff-containerd"),
            "-a",
            d.address,
            "--root",
            str(d.dir / "root"),
            "--state",
            str(d.dir / "state"),
        ]
        if server:
            (d.dir / "config.toml").write_text(f'[grpc]\nserver = "{server}"\n')
            d.argv += ["--config", str(d.dir / "config.toml")]
        return d

    sk = skiff_daemon("skiff-containerd", args.grpc_server)
    # the other gRPC server in the same run, measured with ctr only
    other = skiff_daemon("skiff-containerd-grpcio", "grpcio") if args.compare_grpcio else None
    daemons = [cd, sk] + ([other] if other else [])
    try:
        for d in daemons:
            d.start(env)
            d.ctr("version")
            d.ctr("images", "ls")
        time.sleep(1)
        idle = {d.name: d.memory() for d in daemons}
        for d in daemons:
            d.ctr("images", "import", args.image, client=ctr if d is cd else None)

        variants = [
            Variant("ctr -> containerd (runc-v2 shim)", cd, ctr, "io.containerd.runc.v2"),
            Variant(
                "skiff-ctr -> skiff-containerd (runc-v2 shim)",
                sk,
                skiff_ctr,
                "io.containerd.runc.v2",
            ),
            Variant(
                "skiff-ctr -> skiff-containerd (skiff-shim)",
                sk,
                skiff_ctr,
                "io.containerd.skiff.v1",
            ),
            Variant("ctr -> skiff-containerd (runc-v2 shim)", sk, ctr, "io.containerd.runc.v2"),
        ]
        if args.baseline_ctr:
            variants.append(
                Variant(
                    "baseline skiff-ctr -> skiff-containerd (runc)",
                    sk,
                    [args.baseline_ctr],
                    "io.containerd.runc.v2",
                )
            )
        if other is not None:
            variants.append(
                Variant(
                    "ctr -> skiff-containerd-grpcio (runc-v2)", other, ctr, "io.containerd.runc.v2"
                )
            )
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"bench/supervisor.py  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cpus  "
            f"load {load}  runs {args.runs} (+{args.warmup} warm-up)  "
            f"skiff-containerd grpc server: {args.grpc_server or 'default'}"
        )
        latency(variants, args.runs, args.warmup)
        ref = variants[0].timings.median
        print("\n`run --rm busybox true`           median     p90   ratio")
        for v in variants:
            t = v.timings
            print(
                f"  {v.label:44} {t.median * 1000:6.0f} ms {t.p90 * 1000:5.0f} ms"
                f"  {t.median / ref:5.2f}"
            )
        time.sleep(1)
        busy = {d.name: d.memory() for d in daemons}

        print(f"\nshims, {args.shims} `sleep` containers     n    Pss MB   RSS MB   Pss/ctr all")
        for label, d, client, runtime, binary in (
            (
                "containerd-shim-runc-v2",
                cd,
                ctr,
                "io.containerd.runc.v2",
                b"containerd-shim-runc-v2",
            ),
            (
                "skiff-shim (on skiff-containerd)",
                sk,
                skiff_ctr,
                "io.containerd.skiff.v1",
                b"containerd-shim-skiff-v1",
            ),
        ):
            n, pss, rss, total = shim_memory(d, client, runtime, binary, args.shims)
            print(f"  {label:34} {n:3} {pss:8.1f} {rss:8.1f} {total:10.1f}")
        loaded = {d.name: d.memory() for d in daemons if d is not other}

        print("\ndaemon memory                         RSS MB   Pss MB")
        for when, figures in (
            ("idle", idle),
            ("after the runs", busy),
            (f"{args.shims} running", loaded),
        ):
            for name, (rss, pss) in figures.items():
                print(f"  {name:23} {when:14} {rss:6.1f} {pss:8.1f}")
        return 0
    finally:
        for d in reversed(daemons):
            d.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
