"""`skiff stats`: live (redrawn every second) or one-shot resource usage.

Part of the CLI (DESIGN.md: skiff CLI -> Engine API /containers/{id}/stats).
The figures are computed as the docker CLI computes them from the raw
cgroup numbers (CPU from the delta to precpu_stats, memory minus page cache).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from skiff.cli import formatting as fmt
from skiff.cli.common import Cli, parse_kv_filters, parser
from skiff.client import APIError, Client

HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
           "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O",
           "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}  # fmt: skip
TABLE = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
         "\t{{.BlockIO}}\t{{.PIDs}}")  # fmt: skip


def row(s: dict[str, Any], name: str) -> dict[str, str]:
    cpu = s.get("cpu_stats") or {}
    pre = s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (
        pre.get("cpu_usage") or {}
    ).get("total_usage", 0)
    sys_delta = (cpu.get("system_cpu_usage") or 0) - (pre.get("system_cpu_usage") or 0)
    ncpu = (
        cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    )
    cpu_pct = cpu_delta / sys_delta * ncpu * 100.0 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    mstats = mem.get("stats") or {}
    usage = mem.get("usage") or 0
    cache = mstats.get("total_inactive_file", mstats.get("inactive_file", 0))
    used = usage - cache if cache < usage else usage
    limit = mem.get("limit") or 0
    mem_pct = used / limit * 100.0 if limit else 0.0
    rx = sum(n.get("rx_bytes", 0) for n in (s.get("networks") or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (s.get("networks") or {}).values())
    blk_r = blk_w = 0
    for e in (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(e.get("op", "")).lower()
        if op == "read":
            blk_r += e.get("value", 0)
        elif op == "write":
            blk_w += e.get("value", 0)
    sid = str(s.get("id", ""))
    return {
        "Container": name or fmt.short_id(sid),
        "ID": fmt.short_id(sid),
        "Name": name or "--",
        "CPUPerc": f"{cpu_pct:.2f}%",
        "MemUsage": f"{fmt.bytes_size(used)} / {fmt.bytes_size(limit)}",
        "MemPerc": f"{mem_pct:.2f}%",
        "NetIO": f"{fmt.human_size(rx)} / {fmt.human_size(tx)}",
        "BlockIO": f"{fmt.human_size(blk_r)} / {fmt.human_size(blk_w)}",
        "PIDs": str((s.get("pids_stats") or {}).get("current", 0)),
    }


def stats(cli: Cli, argv: list[str]) -> int:
    p = parser("stats", usage="skiff stats [OPTIONS] [CONTAINER...]")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format", default="")
    p.add_argument("containers", nargs="*")
    o = p.parse_args(argv)
    client = cli.client
    if o.containers:
        names = o.containers
    else:
        names = [c["Id"] for c in client.containers(all=o.all, filters=parse_kv_filters(None))]
    formatter = fmt.Formatter(o.format, TABLE, HEADERS, go_type="*container.statsContext")
    latest: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def follow(name: str, stream: bool) -> None:
        c = Client(client.host, tls=client.tls, version=client.api_version)
        try:
            for s in c.stats(name, stream=stream):
                display = name if o.containers else str(s.get("name", "")).lstrip("/")
                r = row(s, display)
                if not o.containers:
                    r["Container"] = r["ID"]
                with lock:
                    latest[name] = r
                if not stream:
                    break
        except APIError as e:
            with lock:
                errors.append(e.message)
        finally:
            c.close()

    threads = [threading.Thread(target=follow, args=(n, not o.no_stream), daemon=True)
               for n in names]  # fmt: skip
    for t in threads:
        t.start()
    if o.no_stream:
        for t in threads:
            t.join()
        if errors:
            for e in errors:
                cli.eprint(f"Error response from daemon: {e}")
            return 1
        formatter.render([latest[n] for n in names if n in latest], cli.out)
        return 0
    drawn = False
    first_deadline = time.monotonic() + 5
    try:
        while True:
            time.sleep(1.0 if drawn else 0.1)
            with lock:
                rows = [latest[n] for n in names if n in latest]
            alive = any(t.is_alive() for t in threads)
            if not drawn and len(rows) < len(names) and alive and time.monotonic() < first_deadline:
                continue  # the first screen waits (a little) for every container's first sample
            drawn = True
            if cli.out_is_tty():
                cli.out.write("\033[2J\033[H")
            formatter.render(rows, cli.out)
            cli.out.flush()
            if not any(t.is_alive() for t in threads):
                return 1 if errors else 0
    except KeyboardInterrupt:
        return 0
