"""The client end: `skiff` against the docker CLI, both driving the same daemon in
the same run (skiffd, and Debian's dockerd beside it for reference).

The Engine API boundary of DESIGN.md measured from the client side. Each daemon
runs on temporary roots in a private mount namespace (tmpfs over /run, /opt and
/etc/docker); dockerd with --bridge=none --iptables=false. Rounds alternate
between the two CLIs so that load on the machine falls on both alike.

  run --rm   `X run --rm --network none busybox true`: median and p90 latency
  version    `X version` (start-up plus two API calls)
  ps         `X ps -a`

Usage (as root): python bench/cli.py [--runs 20] [--daemon skiffd|dockerd|both]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemons import stop, unmount_under

REPO = Path(__file__).resolve().parent.parent
BUSYBOX_TAR = REPO / "build" / "images" / "busybox.tar"
SKIFF = str(REPO / ".venv" / "bin" / "skiff")
SKIFFD = str(REPO / ".venv" / "bin" / "skiffd")
DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
PRELUDE = (
    "set -e; mount --make-rprivate /; "
    "mount -t tmpfs -o mode=755 bench-run /run; "
    "mount -t tmpfs -o mode=755 bench-opt /opt; "
    "if [ -d /etc/docker ]; then mount -t tmpfs -o mode=755 bench-etc /etc/docker; fi; "
)


def cli(binary: str, sock: Path, config: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SKIFF_"))}
    env.update(DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(config), SKIFF_CONFIG=str(config))
    return subprocess.run([binary, *args], env=env, capture_output=True, timeout=120, check=False)


@contextlib.contextmanager
def daemon(name: str, argv: list[str], base: Path, sock: Path) -> Iterator[Path]:
    log = base / f"{name}.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", PRELUDE + 'exec "$@"',
             "sh", *argv],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while cli(DOCKER, sock, base / "cfg", "version").returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        r = cli(DOCKER, sock, base / "cfg", "load", "-i", str(BUSYBOX_TAR))
        if r.returncode != 0:
            raise RuntimeError(f"{name}: docker load: {r.stderr.decode()}")
        yield sock
    finally:
        stop(proc)


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.9 + 0.5) - 1)]


def measure(sock: Path, config: Path, runs: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    cases = {
        "run --rm busybox true": ["run", "--rm", "--network", "none", "busybox", "true"],
        "version": ["version"],
        "ps -a": ["ps", "-a"],
    }
    times: dict[str, dict[str, list[float]]] = {c: {"skiff": [], "docker": []} for c in cases}
    for case, args in cases.items():
        for i in range(warmup + runs):
            for name, binary in (("skiff", SKIFF), ("docker", DOCKER)) if i % 2 else (
                ("docker", DOCKER), ("skiff", SKIFF)):  # fmt: skip
                t0 = time.perf_counter()
                r = cli(binary, sock, config, *args)
                dt = time.perf_counter() - t0
                if r.returncode != 0:
                    raise RuntimeError(f"{name} {' '.join(args)}: {r.stderr.decode()}")
                if i >= warmup:
                    times[case][name].append(dt * 1000)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--daemon", choices=["skiffd", "dockerd", "both"], default="both")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/cli.py starts daemons and needs root", file=sys.stderr)
        return 1
    if not BUSYBOX_TAR.exists():
        print(f"{BUSYBOX_TAR} is missing: run `make images`", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    base.chmod(0o755)
    (base / "empty.json").write_text("{}")
    argvs = {
        "skiffd": [SKIFFD, "-H", f"unix://{base}/skiff.sock", "--data-root", f"{base}/skiffd-data",
                   "--exec-root", f"{base}/skiffd-exec", "--pidfile", f"{base}/skiffd.pid",
                   "--config-file", f"{base}/empty.json", "--bridge=none"],
        "dockerd": [DOCKERD, "-H", f"unix://{base}/docker.sock", "--data-root", f"{base}/dockerd-data",
                    "--exec-root", f"{base}/dockerd-exec", "--pidfile", f"{base}/dockerd.pid",
                    "--config-file", f"{base}/empty.json", "--bridge=none", "--iptables=false",
                    "--ip6tables=false"],
    }  # fmt: skip
    socks = {"skiffd": base / "skiff.sock", "dockerd": base / "docker.sock"}
    wanted = ["skiffd", "dockerd"] if args.daemon == "both" else [args.daemon]
    try:
        for name in wanted:
            try:
                with daemon(name, argvs[name], base, socks[name]) as sock:
                    times = measure(sock, base / "cfg", args.runs, args.warmup)
            except RuntimeError as e:
                print(f"{name}: skipped: {str(e).splitlines()[0]}")
                continue
            print(f"\nagainst {name} ({args.runs} runs each, interleaved; ms)")
            print(f"{'':26}{'skiff med':>11}{'p90':>8}{'docker med':>12}{'p90':>8}{'ratio':>8}")
            for case, t in times.items():
                s, d = statistics.median(t["skiff"]), statistics.median(t["docker"])
                print(f"{case:26}{s:11.1f}{p90(t['skiff']):8.1f}{d:12.1f}{p90(t['docker']):8.1f}"
                      f"{s / d:8.2f}")  # fmt: skip
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
