"""io.containerd.cgroups.v1.Metrics as codec messages, and how runc's stats fill them.

Sits beside skiff.ttrpc.task: skiff-shim's Stats answers with these in an Any
(type URL "io.containerd.cgroups.v1.Metrics", as containerd-shim-runc-v2 does on
a cgroup v1 host) and must stay on the standard library, so it cannot use the
generated module in skiff.api.gen. Mirrors src/skiff/api/proto/containerd/
cgroups/v1/metrics.proto field for field.
"""

from __future__ import annotations

from skiff.ttrpc.protobuf import STRING, UINT32, UINT64, Field, Message

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

PACKAGE = "io.containerd.cgroups.v1"


class HugetlbStat(Message):
    NAME = f"{PACKAGE}.HugetlbStat"
    usage: int
    max: int
    failcnt: int
    pagesize: str
    FIELDS = (
        Field(1, "usage", UINT64),
        Field(2, "max", UINT64),
        Field(3, "failcnt", UINT64),
        Field(4, "pagesize", STRING),
    )


class PidsStat(Message):
    NAME = f"{PACKAGE}.PidsStat"
    current: int
    limit: int
    FIELDS = (Field(1, "current", UINT64), Field(2, "limit", UINT64))


class CPUUsage(Message):
    NAME = f"{PACKAGE}.CPUUsage"
    total: int
    kernel: int
    user: int
    per_cpu: list[int]
    FIELDS = (
        Field(1, "total", UINT64),
        Field(2, "kernel", UINT64),
        Field(3, "user", UINT64),
        Field(4, "per_cpu", UINT64, repeated=True),
    )


class Throttle(Message):
    NAME = f"{PACKAGE}.Throttle"
    periods: int
    throttled_periods: int
    throttled_time: int
    FIELDS = (
        Field(1, "periods", UINT64),
        Field(2, "throttled_periods", UINT64),
        Field(3, "throttled_time", UINT64),
    )


class CPUStat(Message):
    NAME = f"{PACKAGE}.CPUStat"
    usage: CPUUsage | None
    throttling: Throttle | None
    FIELDS = (Field(1, "usage", CPUUsage), Field(2, "throttling", Throttle))


class MemoryEntry(Message):
    NAME = f"{PACKAGE}.MemoryEntry"
    limit: int
    usage: int
    max: int
    failcnt: int
    FIELDS = (
        Field(1, "limit", UINT64),
        Field(2, "usage", UINT64),
        Field(3, "max", UINT64),
        Field(4, "failcnt", UINT64),
    )


# MemoryStat's counters, numbered 1-32, with the memory.stat key each comes from
_MEMORY_COUNTERS = (
    ("cache", "cache"),
    ("rss", "rss"),
    ("rss_huge", "rss_huge"),
    ("mapped_file", "mapped_file"),
    ("dirty", "dirty"),
    ("writeback", "writeback"),
    ("pg_pg_in", "pgpgin"),
    ("pg_pg_out", "pgpgout"),
    ("pg_fault", "pgfault"),
    ("pg_maj_fault", "pgmajfault"),
    ("inactive_anon", "inactive_anon"),
    ("active_anon", "active_anon"),
    ("inactive_file", "inactive_file"),
    ("active_file", "active_file"),
    ("unevictable", "unevictable"),
    ("hierarchical_memory_limit", "hierarchical_memory_limit"),
    ("hierarchical_swap_limit", "hierarchical_memsw_limit"),
    ("total_cache", "total_cache"),
    ("total_rss", "total_rss"),
    ("total_rss_huge", "total_rss_huge"),
    ("total_mapped_file", "total_mapped_file"),
    ("total_dirty", "total_dirty"),
    ("total_writeback", "total_writeback"),
    ("total_pg_pg_in", "total_pgpgin"),
    ("total_pg_pg_out", "total_pgpgout"),
    ("total_pg_fault", "total_pgfault"),
    ("total_pg_maj_fault", "total_pgmajfault"),
    ("total_inactive_anon", "total_inactive_anon"),
    ("total_active_anon", "total_active_anon"),
    ("total_inactive_file", "total_inactive_file"),
    ("total_active_file", "total_active_file"),
    ("total_unevictable", "total_unevictable"),
)


class MemoryStat(Message):
    NAME = f"{PACKAGE}.MemoryStat"
    cache: int
    rss: int
    total_cache: int
    usage: MemoryEntry | None
    swap: MemoryEntry | None
    kernel: MemoryEntry | None
    kernel_tcp: MemoryEntry | None
    FIELDS = (
        *(Field(i, name, UINT64) for i, (name, _) in enumerate(_MEMORY_COUNTERS, start=1)),
        Field(33, "usage", MemoryEntry),
        Field(34, "swap", MemoryEntry),
        Field(35, "kernel", MemoryEntry),
        Field(36, "kernel_tcp", MemoryEntry),
    )


class MemoryOomControl(Message):
    NAME = f"{PACKAGE}.MemoryOomControl"
    oom_kill_disable: int
    under_oom: int
    oom_kill: int
    FIELDS = (
        Field(1, "oom_kill_disable", UINT64),
        Field(2, "under_oom", UINT64),
        Field(3, "oom_kill", UINT64),
    )


class BlkIOEntry(Message):
    NAME = f"{PACKAGE}.BlkIOEntry"
    op: str
    device: str
    major: int
    minor: int
    value: int
    FIELDS = (
        Field(1, "op", STRING),
        Field(2, "device", STRING),
        Field(3, "major", UINT64),
        Field(4, "minor", UINT64),
        Field(5, "value", UINT64),
    )


# BlkIOStat's lists, numbered 1-8, with runc's JSON key for each
_BLKIO_LISTS = (
    ("io_service_bytes_recursive", "ioServiceBytesRecursive"),
    ("io_serviced_recursive", "ioServicedRecursive"),
    ("io_queued_recursive", "ioQueueRecursive"),
    ("io_service_time_recursive", "ioServiceTimeRecursive"),
    ("io_wait_time_recursive", "ioWaitTimeRecursive"),
    ("io_merged_recursive", "ioMergedRecursive"),
    ("io_time_recursive", "ioTimeRecursive"),
    ("sectors_recursive", "sectorsRecursive"),
)


class BlkIOStat(Message):
    NAME = f"{PACKAGE}.BlkIOStat"
    io_service_bytes_recursive: list[BlkIOEntry]
    FIELDS = tuple(
        Field(i, name, BlkIOEntry, repeated=True)
        for i, (name, _) in enumerate(_BLKIO_LISTS, start=1)
    )


class RdmaEntry(Message):
    NAME = f"{PACKAGE}.RdmaEntry"
    device: str
    hca_handles: int
    hca_objects: int
    FIELDS = (
        Field(1, "device", STRING),
        Field(2, "hca_handles", UINT32),
        Field(3, "hca_objects", UINT32),
    )


class RdmaStat(Message):
    NAME = f"{PACKAGE}.RdmaStat"
    current: list[RdmaEntry]
    limit: list[RdmaEntry]
    FIELDS = (
        Field(1, "current", RdmaEntry, repeated=True),
        Field(2, "limit", RdmaEntry, repeated=True),
    )


_NETWORK_COUNTERS = (
    "rx_bytes",
    "rx_packets",
    "rx_errors",
    "rx_dropped",
    "tx_bytes",
    "tx_packets",
    "tx_errors",
    "tx_dropped",
)


class NetworkStat(Message):
    NAME = f"{PACKAGE}.NetworkStat"
    name: str
    FIELDS = (
        Field(1, "name", STRING),
        *(Field(i, n, UINT64) for i, n in enumerate(_NETWORK_COUNTERS, start=2)),
    )


class CgroupStats(Message):
    NAME = f"{PACKAGE}.CgroupStats"
    nr_sleeping: int
    nr_running: int
    nr_stopped: int
    nr_uninterruptible: int
    nr_io_wait: int
    FIELDS = (
        Field(1, "nr_sleeping", UINT64),
        Field(2, "nr_running", UINT64),
        Field(3, "nr_stopped", UINT64),
        Field(4, "nr_uninterruptible", UINT64),
        Field(5, "nr_io_wait", UINT64),
    )


class Metrics(Message):
    NAME = f"{PACKAGE}.Metrics"
    hugetlb: list[HugetlbStat]
    pids: PidsStat | None
    cpu: CPUStat | None
    memory: MemoryStat | None
    blkio: BlkIOStat | None
    rdma: RdmaStat | None
    network: list[NetworkStat]
    cgroup_stats: CgroupStats | None
    memory_oom_control: MemoryOomControl | None
    FIELDS = (
        Field(1, "hugetlb", HugetlbStat, repeated=True),
        Field(2, "pids", PidsStat),
        Field(3, "cpu", CPUStat),
        Field(4, "memory", MemoryStat),
        Field(5, "blkio", BlkIOStat),
        Field(6, "rdma", RdmaStat),
        Field(7, "network", NetworkStat, repeated=True),
        Field(8, "cgroup_stats", CgroupStats),
        Field(9, "memory_oom_control", MemoryOomControl),
    )


# --- runc's `events --stats` document -> Metrics ----------------------------------


def _uint(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key) or 0
    return int(value) if isinstance(value, int | float) and value > 0 else 0


def _memory_entry(doc: Any) -> MemoryEntry:
    doc = doc if isinstance(doc, dict) else {}
    return MemoryEntry(
        limit=_uint(doc, "limit"),
        usage=_uint(doc, "usage"),
        max=_uint(doc, "max"),
        failcnt=_uint(doc, "failcnt"),
    )


def _device_name(major: int, minor: int) -> str:
    # containerd names the block device by its node in /dev
    try:
        with open(f"/sys/dev/block/{major}:{minor}/uevent") as f:
            for line in f:
                if line.startswith("DEVNAME="):
                    return "/dev/" + line[8:].strip()
    except OSError:
        pass
    return ""


def metrics_from_runc(stats: Mapping[str, Any]) -> Metrics:
    """Metrics from the "data" of runc's stats event (runc's types.Stats JSON).

    runc, crun and skiff-runc all print that document for `events --stats`; the
    shim translates it rather than reading cgroup files itself, so the runtime
    stays the one that knows where the container's cgroup is.
    """
    out = Metrics()
    cpu = stats.get("cpu")
    if isinstance(cpu, dict):
        usage = cpu.get("usage") or {}
        throttling = cpu.get("throttling") or {}
        out.cpu = CPUStat(
            usage=CPUUsage(
                total=_uint(usage, "total"),
                kernel=_uint(usage, "kernel"),
                user=_uint(usage, "user"),
                per_cpu=[int(x) for x in usage.get("percpu") or []],
            ),
            throttling=Throttle(
                periods=_uint(throttling, "periods"),
                throttled_periods=_uint(throttling, "throttledPeriods"),
                throttled_time=_uint(throttling, "throttledTime"),
            ),
        )
    memory = stats.get("memory")
    if isinstance(memory, dict):
        raw = memory.get("raw") or {}
        mem = MemoryStat(
            usage=_memory_entry(memory.get("usage")),
            swap=_memory_entry(memory.get("swap")),
            kernel=_memory_entry(memory.get("kernel")),
            kernel_tcp=_memory_entry(memory.get("kernelTCP")),
        )
        for name, key in _MEMORY_COUNTERS:
            setattr(mem, name, _uint(raw, key))
        if not mem.cache:
            mem.cache = _uint(memory, "cache")
        out.memory = mem
    pids = stats.get("pids")
    if isinstance(pids, dict):
        out.pids = PidsStat(current=_uint(pids, "current"), limit=_uint(pids, "limit"))
    blkio = stats.get("blkio")
    if isinstance(blkio, dict):
        stat = BlkIOStat()
        names: dict[tuple[int, int], str] = {}
        for name, key in _BLKIO_LISTS:
            entries = []
            for e in blkio.get(key) or []:
                major, minor = _uint(e, "major"), _uint(e, "minor")
                if (major, minor) not in names:
                    names[major, minor] = _device_name(major, minor)
                entries.append(
                    BlkIOEntry(
                        op=str(e.get("op") or ""),
                        device=names[major, minor],
                        major=major,
                        minor=minor,
                        value=_uint(e, "value"),
                    )
                )
            setattr(stat, name, entries)
        out.blkio = stat
    hugetlb = stats.get("hugetlb")
    if isinstance(hugetlb, dict):
        out.hugetlb = [
            HugetlbStat(
                usage=_uint(h, "usage"),
                max=_uint(h, "max"),
                failcnt=_uint(h, "failcnt"),
                pagesize=str(size),
            )
            for size, h in sorted(hugetlb.items())
            if isinstance(h, dict)
        ]
    for iface in stats.get("network_interfaces") or []:
        if isinstance(iface, dict):
            net = NetworkStat(name=str(iface.get("name") or ""))
            for counter in _NETWORK_COUNTERS:
                setattr(net, counter, _uint(iface, counter))
            out.network.append(net)
    return out
