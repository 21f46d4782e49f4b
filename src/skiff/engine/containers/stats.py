"""`docker stats` from the container's cgroups (v1 controllers or cgroup v2).

The cgroup is `/skiff/<id>` under each v1 controller (or the v2 root);
the JSON has the shape the docker CLI computes its percentages from.
"""

from __future__ import annotations

import os
import time
from typing import Any

from skiff.engine.containers.logs import rfc3339

CG = "/sys/fs/cgroup"


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _int(path: str, default: int = 0) -> int:
    text = _read(path)
    try:
        return int(text)
    except ValueError:
        return default


def _kv(path: str) -> dict[str, int]:
    out = {}
    for line in _read(path).splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            pass
    return out


def system_cpu_usage() -> int:
    """Host CPU time in ns, as Docker reads /proc/stat."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            ticks = sum(int(x) for x in line.split()[1:8])
            return ticks * (1_000_000_000 // os.sysconf("SC_CLK_TCK"))
    return 0


def sample(cgroup: str, pids: int) -> dict[str, Any]:
    v1 = os.path.isdir(f"{CG}/memory{cgroup}") or os.path.isdir(f"{CG}/cpuacct{cgroup}")
    online = os.cpu_count() or 1
    if v1:
        mem_dir, cpu_dir, pid_dir = (
            f"{CG}/memory{cgroup}",
            f"{CG}/cpuacct{cgroup}",
            f"{CG}/pids{cgroup}",
        )
        usage = _int(f"{mem_dir}/memory.usage_in_bytes")
        limit = _int(f"{mem_dir}/memory.limit_in_bytes")
        mstat = _kv(f"{mem_dir}/memory.stat")
        total = _int(f"{cpu_dir}/cpuacct.usage")
        percpu = [int(x) for x in _read(f"{cpu_dir}/cpuacct.usage_percpu").split() if x.isdigit()]
        cstat = _kv(f"{cpu_dir}/cpuacct.stat")
        tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        user, kernel = cstat.get("user", 0) * tick, cstat.get("system", 0) * tick
        pcur = _int(f"{pid_dir}/pids.current", pids)
        pmax_text = _read(f"{pid_dir}/pids.max")
        max_usage = _int(f"{mem_dir}/memory.max_usage_in_bytes")
    else:
        base = (
            f"{CG}{cgroup}"
            if os.path.exists(f"{CG}/cgroup.controllers")
            else f"{CG}/unified{cgroup}"
        )
        usage = _int(f"{base}/memory.current")
        lim = _read(f"{base}/memory.max")
        limit = int(lim) if lim.isdigit() else 0
        mstat = _kv(f"{base}/memory.stat")
        cs = _kv(f"{base}/cpu.stat")
        total = cs.get("usage_usec", 0) * 1000
        user, kernel = cs.get("user_usec", 0) * 1000, cs.get("system_usec", 0) * 1000
        percpu = []
        pcur = _int(f"{base}/pids.current", pids)
        pmax_text = _read(f"{base}/pids.max")
        max_usage = 0
    host_mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if not limit or limit > host_mem:
        limit = host_mem
    return {
        "read": rfc3339(time.time()),
        "pids_stats": {
            "current": pcur,
            **({"limit": int(pmax_text)} if pmax_text.isdigit() else {}),
        },
        "blkio_stats": {
            "io_service_bytes_recursive": None,
            "io_serviced_recursive": None,
            "io_queue_recursive": None,
            "io_service_time_recursive": None,
            "io_wait_time_recursive": None,
            "io_merged_recursive": None,
            "io_time_recursive": None,
            "sectors_recursive": None,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": total,
                **({"percpu_usage": percpu} if percpu else {}),
                "usage_in_kernelmode": kernel,
                "usage_in_usermode": user,
            },
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": online,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {
            "usage": usage,
            **({"max_usage": max_usage} if max_usage else {}),
            "stats": mstat,
            "limit": limit,
        },
    }


def empty() -> dict[str, Any]:
    return {
        "read": "0001-01-01T00:00:00Z",
        "pids_stats": {},
        "blkio_stats": {},
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {},
    }
