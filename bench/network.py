"""Cost of skiffd's network layer (skiff.engine.network), inside a namespace of its own.

Measures, for the library the engine calls: attach+release latency of a
container on a bridge network against `--network none`, and TCP throughput to
a container through a published port by the userland proxy (127.0.0.1) and by
nftables DNAT (from a second namespace), against the container's address
directly. Every packet stays in namespaces this script creates and removes.
The side-by-side against Debian's dockerd (issue 8) needs skiffd; not here yet.

Usage (as root): python bench/network.py [--runs 30] [--mbytes 200]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import tempfile
import threading
import time

from skiff.engine.network import NetworkManager, parse_publish
from skiff.engine.network.netns import CLONE_NEWNET, run_in_netns
from skiff.runtime import linux

CHUNK = 256 * 1024


def _sink_server(sock: socket.socket) -> None:
    sock.listen(8)

    def serve() -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            with conn:
                while conn.recv(CHUNK):
                    pass
                conn.sendall(b"k")

    threading.Thread(target=serve, daemon=True).start()


def _throughput(connect: socket.socket, total: int) -> float:
    buf = b"\0" * CHUNK
    start = time.perf_counter()
    with connect as s:
        sent = 0
        while sent < total:
            s.sendall(buf)
            sent += len(buf)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)
    return total / (time.perf_counter() - start) / 1e6


def _container() -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(["unshare", "--net", "sleep", "600"])
    path = f"/proc/{proc.pid}/ns/net"
    mine = os.stat("/proc/thread-self/ns/net").st_ino
    while os.stat(path).st_ino == mine:
        time.sleep(0.001)
    return proc, path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--mbytes", type=int, default=200)
    args = ap.parse_args()
    name = f"skiff-b-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    procs: list[subprocess.Popen[bytes]] = []
    mgr: NetworkManager | None = None
    try:
        fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
        linux.setns(fd, CLONE_NEWNET)
        os.close(fd)
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        state = tempfile.mkdtemp(prefix="skiff-bench-net-")
        mgr = NetworkManager(state, bridge_name="skb" + secrets.token_hex(4), dns_upstreams=[])
        mgr.start()
        mgr.create_network("bench", subnet="10.88.0.0/24")
        proc, path = _container()
        procs.append(proc)
        for network in ("none", "bridge", "bench"):
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                mgr.attach("c" * 64, network, path, name="c")
                mgr.release_container("c" * 64)
                times.append((time.perf_counter() - t0) * 1000)
            print(
                f"attach+release --network {network:7s} median {statistics.median(times):6.2f} ms"
                f"  p90 {sorted(times)[int(len(times) * 0.9)]:6.2f} ms"
            )
        ep = mgr.attach("d" * 64, "bench", path, name="d", ports=parse_publish("18888:80"))
        _sink_server(run_in_netns(path, lambda: _bound(80)))
        # an outside client namespace on a veth: 10.98.0.2 -> host 10.98.0.1
        client, cpath = _container()
        procs.append(client)
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                "bx0",
                "type",
                "veth",
                "peer",
                "name",
                "bx1",
                "netns",
                str(client.pid),
            ],
            check=True,
        )
        subprocess.run(["ip", "addr", "add", "10.98.0.1/24", "dev", "bx0"], check=True)
        subprocess.run(["ip", "link", "set", "bx0", "up"], check=True)
        for cmd in ("ip addr add 10.98.0.2/24 dev bx1", "ip link set bx1 up"):
            subprocess.run(["nsenter", f"--net={cpath}", *cmd.split()], check=True)
        total = args.mbytes * 1_000_000
        rows = [
            ("direct to container IP", lambda: socket.create_connection((ep.ip, 80))),
            (
                "published, 127.0.0.1 (userland proxy)",
                lambda: socket.create_connection(("127.0.0.1", 18888)),
            ),
            (
                "published, from outside (nft DNAT)",
                lambda: run_in_netns(cpath, lambda: socket.create_connection(("10.98.0.1", 18888))),
            ),
        ]
        for label, conn in rows:
            rates = [_throughput(conn(), total) for _ in range(3)]
            print(f"TCP {label:40s} {statistics.median(rates):8.0f} MB/s")
    finally:
        if mgr is not None:
            mgr.close()
        for p in procs:
            p.kill()
            p.wait()
        linux.setns(orig, CLONE_NEWNET)
        subprocess.run(["ip", "netns", "del", name], check=False)


def _bound(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    return s


if __name__ == "__main__":
    main()
