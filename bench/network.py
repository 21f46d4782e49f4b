"""Networking end to end: skiffd beside Debian's dockerd (its bridge, iptables
rules and docker-proxy), each inside a network namespace this script makes,
driven by the same docker CLI on the same busybox image, in one run (issue 8).

  start      `docker run --rm busybox true` on the default bridge network
             against `docker run --rm --network none busybox true`, rounds
             interleaved between the daemons: median and p90 latency
  TCP        throughput to a container running a busybox sink
             (`nc -ll -p 5000 -e sh -c 'cat >/dev/null'`) published with
             `-p 5000`: from the daemon's namespace to 127.0.0.1:PORT (the
             userland proxy: docker-proxy, skiffd's proxy), from a second
             namespace on a veth ("another machine") to the daemon's address
             10.98.0.1:PORT (the DNAT path through the kernel: prerouting),
             from the daemon's namespace to that same address (DNAT in the
             output hook), and straight to the container's address (no port
             publishing at all)

  UDP        round trips of a 64-byte datagram (median, microseconds) and the
             rate of 1 KB datagrams echoed with 64 in flight (MB/s echoed), to
             a Python echo server in the same container's network namespace,
             published with `-p 5001/udp`: through 127.0.0.1:PORT (the
             userland proxy) and straight to the container's address

Each transfer is N MB from a Python client, timed until the sink has read
everything and closed (the client half-closes and waits for EOF). Every packet
stays in namespaces this script creates; the daemons, their containers and
the namespaces are gone at exit, even on failure.

Usage (as root): python bench/network.py [--runs 20] [--mbytes 200] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from daemons import BUSYBOX_TAR, Daemon, dockerd, in_netns, outside, skiffd, unmount_under

CHUNK = 256 * 1024
SINK_PORT = 5000
UDP_PORT = 5001
UDP_ROUNDS = 2000
UDP_COUNT, UDP_SIZE, UDP_WINDOW = 20000, 1024, 64
UDP_ECHO = f"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.bind(("0.0.0.0", {UDP_PORT}))
while True:
    data, peer = s.recvfrom(65536)
    s.sendto(data, peer)
"""
OUTSIDE_HOST = "10.98.0.1"


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * 0.9 + 0.5) - 1)]


def send(addr: tuple[str, int], total: int, timeout: float = 60) -> float:
    """Send total bytes to a sink; MB/s from connect to the sink's close."""
    buf = b"\0" * CHUNK
    t0 = time.perf_counter()
    with socket.create_connection(addr, timeout=timeout) as s:
        sent = 0
        while sent < total:
            s.sendall(buf)
            sent += len(buf)
        s.shutdown(socket.SHUT_WR)
        if s.recv(1) != b"":
            raise RuntimeError("the sink answered instead of closing")
    return sent / (time.perf_counter() - t0) / 1e6


def udp_rtt(addr: tuple[str, int]) -> float:
    """Median round trip of a 64-byte datagram, microseconds (a lost one is resent)."""
    times: list[float] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.connect(addr)
        for _ in range(20):  # the first datagram opens the proxy's flow
            s.send(b"w")
            with contextlib.suppress(TimeoutError):
                s.recv(2048)
                break
        else:
            raise RuntimeError(f"no UDP echo from {addr}")
        while len(times) < UDP_ROUNDS:
            t0 = time.perf_counter()
            s.send(b"x" * 64)
            with contextlib.suppress(TimeoutError):
                s.recv(2048)
                times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def udp_rate(addr: tuple[str, int]) -> float:
    """MB/s echoed back of UDP_COUNT datagrams of UDP_SIZE bytes, UDP_WINDOW in flight
    (a datagram lost is given up after 0.2 s and counts for nothing)."""
    buf = b"\0" * UDP_SIZE
    sent = done = echoed = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(0.2)
        s.connect(addr)
        t0 = time.perf_counter()
        while done < UDP_COUNT:
            while sent < UDP_COUNT and sent - done < UDP_WINDOW:
                s.send(buf)
                sent += 1
            try:
                echoed += len(s.recv(65536))
                done += 1
            except TimeoutError:
                done = sent  # the rest of the window is lost
        return echoed / (time.perf_counter() - t0) / 1e6


def wait_sink(netns: str, addr: tuple[str, int], timeout: float = 30) -> None:
    """Until a small transfer to addr goes through (a sink that is not listening yet
    resets the connection; rules may take a moment to be in place)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            in_netns(netns, lambda: send(addr, CHUNK, timeout=5))
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no sink at {addr}: {exc}") from exc
            time.sleep(0.1)


def start_latency(daemons: list[Daemon], runs: int, warmup: int) -> dict[str, dict[str, float]]:
    variants = {"bridge": ["run", "--rm", "busybox", "true"],
                "none": ["run", "--rm", "--network", "none", "busybox", "true"]}  # fmt: skip
    times: dict[tuple[str, str], list[float]] = {(d.name, v): [] for d in daemons for v in variants}
    for i in range(warmup + runs):
        order = daemons if i % 2 == 0 else list(reversed(daemons))
        for d in order:
            for variant, argv in variants.items():
                t0 = time.perf_counter()
                d.must(*argv)
                if i >= warmup:
                    times[(d.name, variant)].append(time.perf_counter() - t0)
    out: dict[str, dict[str, float]] = {d.name: {} for d in daemons}
    for (name, variant), values in times.items():
        out[name][f"run_{variant}_median_ms"] = statistics.median(values) * 1000
        out[name][f"run_{variant}_p90_ms"] = p90(values) * 1000
    return out


def throughput(d: Daemon, total: int, repeat: int) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    cid = d.must(
        "run", "-d", "-p", str(SINK_PORT), "-p", f"{UDP_PORT}/udp", "busybox",
        "nc", "-ll", "-p", str(SINK_PORT), "-e", "sh", "-c", "cat >/dev/null",
    ).strip()  # fmt: skip
    echo: subprocess.Popen[bytes] | None = None
    try:
        ip = d.must("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid).strip()
        ports = d.must("port", cid, f"{SINK_PORT}/tcp").split()
        tail = ports[0].rsplit(":", 1)[-1] if ports else ""
        port = int(tail) if tail.isdigit() else 0  # "0.0.0.0:32768"; nothing if unpublished
        if ip:
            # straight to the sink first: a refusal there means nc is not listening yet
            wait_sink(d.netns, (ip, SINK_PORT))
        with outside(d, OUTSIDE_HOST) as other:
            paths: list[tuple[str, str, tuple[str, int]]] = [
                ("tcp_direct_mb_s", d.netns, (ip, SINK_PORT)),
                ("tcp_proxy_mb_s", d.netns, ("127.0.0.1", port)),
                ("tcp_dnat_mb_s", other, (OUTSIDE_HOST, port)),
                ("tcp_local_dnat_mb_s", d.netns, (OUTSIDE_HOST, port)),
            ]
            for key, netns, addr in paths:
                try:
                    if not addr[0] or not addr[1]:
                        raise RuntimeError(f"no address (ip {ip!r}, published port {port})")
                    wait_sink(netns, addr)
                    rates = [
                        in_netns(netns, functools.partial(send, addr, total)) for _ in range(repeat)
                    ]
                    out[key] = statistics.median(rates)
                except (OSError, RuntimeError) as exc:
                    out[key] = f"failed: {exc}"
                    print(f"{d.name}: {key}: {exc}", file=sys.stderr)
        echo, udp = udp_paths(d, cid, ip)
        for key, fn in udp:
            try:
                out[key] = fn()
            except (OSError, RuntimeError) as exc:
                out[key] = f"failed: {exc}"
                print(f"{d.name}: {key}: {exc}", file=sys.stderr)
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        d.docker("rm", "-f", cid)
    return out


def udp_paths(
    d: Daemon, cid: str, ip: str
) -> tuple[subprocess.Popen[bytes], list[tuple[str, Callable[[], float]]]]:
    """The UDP echo server (in the container's network namespace, by its pid) and the
    measurements to take against it."""
    pid = d.must("inspect", "-f", "{{.State.Pid}}", cid).strip()
    ports = d.must("port", cid, f"{UDP_PORT}/udp").split()
    tail = ports[0].rsplit(":", 1)[-1] if ports else ""
    port = int(tail) if tail.isdigit() else 0
    echo = subprocess.Popen(
        ["nsenter", "-t", pid, "-n", sys.executable, "-c", UDP_ECHO],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    proxy, direct = ("127.0.0.1", port), (ip, UDP_PORT)

    def run(fn: Callable[[tuple[str, int]], float], addr: tuple[str, int]) -> float:
        return statistics.median(in_netns(d.netns, functools.partial(fn, addr)) for _ in range(3))

    return echo, [
        ("udp_proxy_rtt_us", functools.partial(run, udp_rtt, proxy)),
        ("udp_direct_rtt_us", functools.partial(run, udp_rtt, direct)),
        ("udp_proxy_mb_s", functools.partial(run, udp_rate, proxy)),
        ("udp_direct_mb_s", functools.partial(run, udp_rate, direct)),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--mbytes", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5, help="transfers per path")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print(
            "bench/network.py starts daemons in network namespaces and needs root", file=sys.stderr
        )
        return 1
    if not BUSYBOX_TAR.exists():
        print(f"{BUSYBOX_TAR} is missing: run `make images`", file=sys.stderr)
        return 1
    # a SIGTERM (timeout, CI) unwinds like ctrl-c, so the daemons and namespaces go too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    base = Path(tempfile.mkdtemp(prefix="bench-network-"))
    base.chmod(0o755)
    results: dict[str, dict[str, float | str]] = {}
    try:
        with contextlib.ExitStack() as stack:
            daemons = [
                stack.enter_context(skiffd(base)),
                stack.enter_context(dockerd(base)),  # default bridge, iptables, docker-proxy
            ]
            for d in daemons:
                d.must("load", "-q", "-i", str(BUSYBOX_TAR))
                results[d.name] = {}
            for name, figures in start_latency(daemons, args.runs, args.warmup).items():
                results[name].update(figures)
            for d in daemons:
                results[d.name].update(throughput(d, args.mbytes * 1_000_000, args.repeat))
    finally:
        unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)
    report(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def report(results: dict[str, dict[str, float | str]], args: argparse.Namespace) -> None:
    s, k = results["skiffd"], results["dockerd"]
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"bench/network.py  {time.strftime('%Y-%m-%d %H:%M')}  {os.cpu_count()} cpus  load {load}"
          f"  runs {args.runs}  {args.repeat} x {args.mbytes} MB per path")  # fmt: skip
    print(f"{'':40}{'skiffd':>12}{'dockerd':>12}{'ratio':>8}")
    rows = [
        ("run_bridge_median_ms", "run --rm, bridge: median (ms)"),
        ("run_bridge_p90_ms", "run --rm, bridge: p90 (ms)"),
        ("run_none_median_ms", "run --rm, --network none: median (ms)"),
        ("run_none_p90_ms", "run --rm, --network none: p90 (ms)"),
        ("tcp_proxy_mb_s", f"TCP 127.0.0.1:PORT, proxy ({args.mbytes} MB) MB/s"),
        ("tcp_dnat_mb_s", f"TCP {OUTSIDE_HOST}:PORT, DNAT MB/s"),
        ("tcp_local_dnat_mb_s", f"TCP {OUTSIDE_HOST}:PORT from the host MB/s"),
        ("tcp_direct_mb_s", "TCP container IP:5000 MB/s"),
        ("udp_proxy_rtt_us", "UDP 127.0.0.1:PORT, proxy: RTT (us)"),
        ("udp_direct_rtt_us", "UDP container IP:5001: RTT (us)"),
        ("udp_proxy_mb_s", "UDP 127.0.0.1:PORT, proxy: MB/s"),
        ("udp_direct_mb_s", "UDP container IP:5001: MB/s"),
    ]
    for key, label in rows:
        a, b = s.get(key, "-"), k.get(key, "-")
        if isinstance(a, float) and isinstance(b, float):
            print(f"{label:40}{a:12.1f}{b:12.1f}{a / b:8.2f}")
        else:
            print(f"{label:40}{_cell(a)}{_cell(b)}{'-':>8}")
    for name in ("skiffd", "dockerd"):
        for key, value in results[name].items():
            if isinstance(value, str):
                print(f"{name} {key}: {value}")
    print("ratio = skiffd / dockerd: below 1 is faster for latency, above 1 for throughput")


def _cell(value: float | str) -> str:
    return f"{value:12.1f}" if isinstance(value, float) else f"{'failed':>12}"


if __name__ == "__main__":
    sys.exit(main())
