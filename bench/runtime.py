"""Start-up cost of the OCI runtime layer: skiff-runc beside runc and crun.

The bottom of DESIGN.md's layer diagram, measured from the outside through
the OCI runtime command line only: `run` of /bin/true and a full
create + start + wait + delete cycle, for each runtime in the same run, with
the host's process spawn cost as the floor. It also checks that skiff-runc's
start-up imports only the standard library.

Usage (as root): python bench/runtime.py [--runs 30] [--warmup 5]
    [--skiff-runc PATH] [--runc PATH] [--crun PATH] [--image DIR]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_IMAGE = REPO / "build" / "images" / "busybox-oci"
# crun 1.8 reads this file to decide the host is cgroup v2; on this hybrid
# host it lists no controllers and crun refuses to start. An empty file bound
# over it, in a private mount namespace only, makes crun take the v1 path.
UNIFIED_CONTROLLERS = Path("/sys/fs/cgroup/unified/cgroup.controllers")
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Timings:
    """Wall times in seconds of one operation, one sample per run."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        # Nearest-rank percentile: no interpolation between two runs.
        return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]


@dataclass
class Result:
    name: str
    path: str
    run: Timings | None = None
    cycle: Timings | None = None
    error: str = ""


# --- bundle ------------------------------------------------------------------


def layer_of(image: Path) -> Path:
    """The single gzip layer blob of the OCI layout at `image`."""
    index = json.loads((image / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((image / "blobs" / digest.replace(":", "/")).read_text())
    layers = manifest["layers"]
    if len(layers) != 1:
        raise SystemExit(f"bench: expected one layer in {image}, found {len(layers)}")
    layer_digest: str = layers[0]["digest"]
    return image / "blobs" / layer_digest.replace(":", "/")


def make_bundle(image: Path, bundle: Path, runc: str) -> None:
    """busybox rootfs plus runc's default spec, running /bin/true without a tty."""
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    # GNU tar as root keeps owners, modes and links; our own image, trusted.
    subprocess.run(["tar", "-xzf", str(layer_of(image)), "-C", str(rootfs)], check=True)
    subprocess.run([runc, "spec", "--bundle", str(bundle)], check=True)
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text())
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    config_path.write_text(json.dumps(config, indent=2))


# --- measuring: one worker process per runtime -------------------------------
# Workers stay up for the whole run and take one command at a time ("run" or
# "cycle" on stdin, the wall time or an error on stdout), so the runtimes are
# measured interleaved: on a busy machine, load drifts hit all of them alike.
# crun's worker lives in its own private mount namespace (see run_worker).


class Caller:
    """Runs runtime commands with stdio on /dev/null and stderr in a file.

    Not a pipe: `create` hands its stdio to the container's init, which
    would hold a pipe open and leave a reader waiting for EOF.
    """

    def __init__(self) -> None:
        # Lives as long as the worker; closed when the process ends.
        self.errors = tempfile.TemporaryFile()  # noqa: SIM115

    def __call__(self, argv: Sequence[str]) -> None:
        self.errors.seek(0)
        self.errors.truncate()
        code = subprocess.call(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.errors
        )
        if code != 0:
            self.errors.seek(0)
            err = self.errors.read().decode(errors="replace").strip().splitlines()
            what = " ".join(a for a in argv if not a.startswith("/"))
            last = err[-1] if err else "no message"
            raise RuntimeError(f"{what}: exit {code}: {last}")


def wait_exit(pid: int) -> None:
    """Wait for the container's init to exit and reap it, as a shim would.

    The worker is a child subreaper, so the orphaned init becomes its child.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        fd = -1
    if fd >= 0:
        try:
            select.select([fd], [], [])
        finally:
            os.close(fd)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # reaped by someone else (no subreaper support): it has exited


class Operations:
    """The two measured operations of one runtime, with its own state root."""

    def __init__(self, runtime: str, bundle: Path, root: str) -> None:
        self.base = [runtime, "--root", root]
        self.bundle = str(bundle)
        self.root = Path(root)
        self.call = Caller()
        self.serial = 0

    def next_id(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.serial}"

    def run(self) -> None:
        self.call([*self.base, "run", "--bundle", self.bundle, self.next_id("run")])

    def cycle(self) -> None:
        cid = self.next_id("cycle")
        pid_file = self.root / f"{cid}.pid"
        self.call([*self.base, "create", "--bundle", self.bundle, "--pid-file", str(pid_file), cid])
        try:
            pid = int(pid_file.read_text())
            self.call([*self.base, "start", cid])
            wait_exit(pid)
        except BaseException:
            # Leave nothing behind, but report the first failure.
            subprocess.call([*self.base, "delete", "--force", cid], stderr=subprocess.DEVNULL)
            raise
        self.call([*self.base, "delete", cid])


def worker_main(args: argparse.Namespace) -> int:
    if args.mask_unified:
        # Inside `unshare -m --propagation private`: this mount is seen by
        # this process tree only and disappears with it.
        empty = Path(args.mask_unified)
        subprocess.run(["mount", "--bind", str(empty), str(UNIFIED_CONTROLLERS)], check=True)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    with tempfile.TemporaryDirectory(prefix="bench-root-") as root:
        ops = Operations(args.worker, Path(args.bundle), root)
        actions: dict[str, Callable[[], None]] = {"run": ops.run, "cycle": ops.cycle}
        for line in sys.stdin:
            action = actions.get(line.strip())
            if action is None:
                break
            start = time.perf_counter()
            try:
                action()
                reply = f"{time.perf_counter() - start!r}"
            except Exception as exc:
                reply = f"error: {exc}".replace("\n", " ")
            print(reply, flush=True)
    return 0


class Worker:
    """The bench's end of one runtime's worker process."""

    def __init__(self, name: str, runtime: str, bundle: Path, tmp: Path) -> None:
        self.result = Result(name=name, path=runtime, run=Timings([]), cycle=Timings([]))
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", runtime]
        argv += ["--bundle", str(bundle)]
        if name == "crun" and UNIFIED_CONTROLLERS.exists():
            # crun 1.8 refuses this hybrid host unless cgroup2's controller
            # list looks empty-and-absent; mask it in a private namespace.
            empty = tmp / "empty-cgroup.controllers"
            empty.write_bytes(b"")
            argv = ["unshare", "--mount", "--propagation", "private", *argv]
            argv += ["--mask-unified", str(empty)]
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    def measure(self, op: str, keep: bool) -> None:
        if self.result.error:
            return
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(op + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self.proc.stdout.readline().strip()
        if not reply:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            self.result.error = f"worker died: {err.strip()[-300:]}"
        elif reply.startswith("error: "):
            self.result.error = f"{op}: {reply[7:]}"
        elif keep:
            timings = self.result.run if op == "run" else self.result.cycle
            assert timings is not None
            timings.samples.append(float(reply))

    def close(self) -> Result:
        assert self.proc.stdin
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()
        return self.result


def measure_all(
    runtimes: list[tuple[str, str]], bundle: Path, tmp: Path, runs: int, warmup: int
) -> list[Result]:
    workers = [Worker(name, path, bundle, tmp) for name, path in runtimes]
    try:
        for i in range(warmup + runs):
            # Rotate who goes first, so no runtime always follows the same one.
            turn = workers[i % len(workers) :] + workers[: i % len(workers)]
            for op in ("run", "cycle"):
                for w in turn:
                    w.measure(op, keep=i >= warmup)
    finally:
        results = [w.close() for w in workers]
    return results


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def sample(action: Callable[[], None], runs: int, warmup: int) -> Timings:
    for _ in range(warmup):
        action()
    return Timings([timed(action) for _ in range(runs)])


# --- floor and import check --------------------------------------------------


def spawn_floor(runs: int, warmup: int) -> Timings:
    true = shutil.which("true") or "/bin/true"
    call = Caller()
    return sample(lambda: call([true]), runs, warmup)


def interpreter_of(script: str) -> list[str]:
    """The #! line of a launcher script: interpreter and its flags (a lean
    launcher may run Python with -I -S, which changes what start-up loads)."""
    with open(script, "rb") as f:
        first = f.readline().decode(errors="replace")
    return first[2:].split() if first.startswith("#!") else [sys.executable]


def imports_of(argv: Sequence[str], python: Sequence[str]) -> tuple[set[str], float, int, str]:
    """Top-level modules imported by `python -X importtime argv`, its wall
    time, exit status and last stderr line that is not an import record."""
    start = time.perf_counter()
    proc = subprocess.run(
        [python[0], "-X", "importtime", *python[1:], *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    elapsed = time.perf_counter() - start
    names: set[str] = set()
    other = ""
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s+(\S+)", line)
        if m:
            names.add(m.group(1).split(".")[0])
        elif line.strip():
            other = line.strip()
    return names, elapsed, proc.returncode, other


def import_report(skiff_runc: str, bundle: Path) -> list[str]:
    """Whether skiff-runc's start-up imports anything beyond the standard
    library. Modules the interpreter itself loads before any script runs
    (site hooks such as a distribution's sitecustomize) are measured apart
    and left out of the verdict: skiff-runc cannot choose them."""
    python = interpreter_of(skiff_runc)
    stdlib = set(sys.stdlib_module_names) | {"__main__"}
    interpreter, bare_time, _, _ = imports_of(["-c", "pass"], python)
    site_extras = sorted(interpreter - stdlib)
    lines = [
        f"interpreter alone ({' '.join(python)} -c pass): {len(interpreter)} top-level modules, "
        f"{bare_time * 1000:.1f} ms"
        + (f"; non-stdlib site hooks: {', '.join(site_extras)}" if site_extras else "")
    ]
    with tempfile.TemporaryDirectory(prefix="bench-imports-") as root:
        checks = [
            ("--version", [skiff_runc, "--version"]),
            ("run", [skiff_runc, "--root", root, "run", "--bundle", str(bundle), "imports"]),
        ]
        for label, argv in checks:
            names, elapsed, status, other = imports_of(argv, python)
            added = names - interpreter
            foreign = sorted(n for n in added - stdlib if n != "skiff")
            verdict = "stdlib-only" if not foreign else "NOT stdlib-only: " + ", ".join(foreign)
            if status != 0:
                verdict += f" (exit {status}: {other[:120]})"
            lines.append(
                f"skiff-runc {label}: {verdict}; adds {len(added)} top-level modules "
                f"({', '.join(sorted(added))}); {elapsed * 1000:.1f} ms under -X importtime"
            )
    return lines


# --- report ------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f}"


def table(results: list[Result], floor: Timings, runs: int) -> str:
    runc = next((r for r in results if r.name == "runc" and not r.error), None)
    head = f"{'runtime':<12} {'operation':<22} {'median ms':>9} {'p90 ms':>8} {'x runc':>7}"
    rows = [head, "-" * len(head)]
    rows.append(f"{'host':<12} {'spawn /bin/true':<22} {ms(floor.median)} {ms(floor.p90)} {'':>7}")
    for r in results:
        if r.error or r.run is None or r.cycle is None:
            rows.append(f"{r.name:<12} {'FAILED':<22} {r.error[:200]}")
            continue
        for op, t, ref in (
            ("run /bin/true", r.run, runc.run if runc else None),
            ("create+start+delete", r.cycle, runc.cycle if runc else None),
        ):
            ratio = f"{t.median / ref.median:7.2f}" if ref else f"{'-':>7}"
            rows.append(f"{r.name:<12} {op:<22} {ms(t.median)} {ms(t.p90)} {ratio}")
    rows.append(f"({runs} runs each after warm-up; wall time of the runtime command(s))")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    default_skiff = Path(sys.executable).parent / "skiff-runc"
    if not default_skiff.exists():
        default_skiff = REPO / ".venv" / "bin" / "skiff-runc"
    p.add_argument("--runs", type=int, default=30, help="measured runs per operation")
    p.add_argument("--warmup", type=int, default=5, help="unmeasured runs first")
    p.add_argument("--skiff-runc", default=str(default_skiff))
    p.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    p.add_argument("--crun", default=shutil.which("crun") or "")
    p.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    # Internal: one runtime measured in this process, JSON on stdout.
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--bundle", help=argparse.SUPPRESS)
    p.add_argument("--mask-unified", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    if os.geteuid() != 0:
        print("bench: must run as root", file=sys.stderr)
        return 1
    if args.runs < 30:
        print("bench: note: fewer than 30 runs, medians are rough", file=sys.stderr)
    if not (args.image / "index.json").exists():
        print(f"bench: no image at {args.image}; run `make images`", file=sys.stderr)
        return 1
    runtimes = [("skiff-runc", args.skiff_runc), ("runc", args.runc)]
    if args.crun and Path(args.crun).exists():
        runtimes.append(("crun", args.crun))
    else:
        print("bench: crun not installed, left out", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp_name:
        tmp = Path(tmp_name)
        bundle = tmp / "bundle"
        make_bundle(args.image, bundle, args.runc)
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(
            f"bench/runtime.py  {time.strftime('%Y-%m-%d %H:%M')}  kernel {os.uname().release}"
            f"  {os.cpu_count()} cpus  load {load}"
        )
        for name, path in runtimes:
            print(f"  {name}: {path}", file=sys.stderr)
        floor = spawn_floor(args.runs, args.warmup)
        results = measure_all(runtimes, bundle, tmp, args.runs, args.warmup)
        print(table(results, floor, args.runs))
        if Path(args.skiff_runc).exists():
            for line in import_report(args.skiff_runc, bundle):
                print(line)
        else:
            print(f"skiff-runc: not found at {args.skiff_runc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
