"""skiff.ttrpc.cgroups: the stdlib io.containerd.cgroups.v1 messages match the
.proto (through its generated module) and read runc's stats document."""

from __future__ import annotations

import pytest

from skiff.ttrpc import cgroups
from skiff.ttrpc.protobuf import Any_, Message

metrics_pb2 = pytest.importorskip("skiff.api.gen.containerd.cgroups.v1.metrics_pb2")

_KINDS = {9: "string", 4: "uint64", 13: "uint32", 11: "message"}

# runc 1.1's `events --stats` on a cgroup v1 host, trimmed
RUNC_STATS = {
    "cpu": {
        "usage": {"percpu": [12478218, 3138080], "total": 15616298, "kernel": 0, "user": 10000000},
        "throttling": {"periods": 4, "throttledPeriods": 2, "throttledTime": 900},
    },
    "memory": {
        "cache": 4096,
        "usage": {"limit": 9223372036854771712, "usage": 512000, "max": 2777088, "failcnt": 3},
        "swap": {"limit": 9223372036854771712, "usage": 512000, "max": 2777088, "failcnt": 0},
        "kernel": {"limit": 9223372036854771712, "usage": 249856, "max": 606208, "failcnt": 0},
        "kernelTCP": {"limit": 9223372036854771712, "failcnt": 0},
        "raw": {
            "cache": 4096,
            "rss": 49152,
            "pgpgin": 460,
            "pgmajfault": 2,
            "hierarchical_memsw_limit": 9223372036854771712,
            "total_cache": 8192,
            "total_pgpgout": 447,
        },
    },
    "pids": {"current": 1},
    "blkio": {"ioServiceBytesRecursive": [{"major": 1, "minor": 0, "op": "Read", "value": 7}]},
    "hugetlb": {"2MB": {"failcnt": 0, "max": 4096}, "1GB": {"failcnt": 1}},
    "intel_rdt": {},
    "network_interfaces": [{"name": "eth0", "rx_bytes": 10, "tx_dropped": 1}],
}


def _ours() -> list[type[Message]]:
    return [
        v
        for v in vars(cgroups).values()
        if isinstance(v, type) and issubclass(v, Message) and v.NAME.startswith(cgroups.PACKAGE)
    ]


def test_messages_match_the_proto() -> None:
    names = set(metrics_pb2.DESCRIPTOR.message_types_by_name)
    assert {cls.NAME.rsplit(".", 1)[1] for cls in _ours()} == names
    for cls in _ours():
        d = metrics_pb2.DESCRIPTOR.message_types_by_name[cls.NAME.rsplit(".", 1)[1]]
        assert d.full_name == cls.NAME
        want = {f.number: (f.name, _KINDS[f.type], f.is_repeated) for f in d.fields}
        got = {f.number: (f.name, f.kind, f.repeated) for f in cls.FIELDS}
        assert got == want, cls.NAME


def test_runc_stats_to_metrics() -> None:
    m = cgroups.metrics_from_runc(RUNC_STATS)
    assert m.cpu is not None and m.cpu.usage is not None and m.cpu.throttling is not None
    assert (m.cpu.usage.total, m.cpu.usage.user, m.cpu.usage.per_cpu) == (
        15616298,
        10000000,
        [12478218, 3138080],
    )
    assert m.cpu.throttling.throttled_periods == 2 and m.cpu.throttling.throttled_time == 900
    assert m.memory is not None and m.memory.usage is not None
    assert (m.memory.usage.usage, m.memory.usage.max, m.memory.usage.failcnt) == (
        512000,
        2777088,
        3,
    )
    assert m.memory.kernel is not None and m.memory.kernel.usage == 249856
    mem = m.memory
    assert (mem.cache, mem.rss, mem.total_cache) == (4096, 49152, 8192)
    assert mem.pg_pg_in == 460 and mem.pg_maj_fault == 2
    assert mem.total_pg_pg_out == 447
    assert mem.hierarchical_swap_limit == 9223372036854771712
    assert m.pids is not None and (m.pids.current, m.pids.limit) == (1, 0)
    assert [(h.pagesize, h.max, h.failcnt) for h in m.hugetlb] == [("1GB", 0, 1), ("2MB", 4096, 0)]
    assert m.blkio is not None
    (entry,) = m.blkio.io_service_bytes_recursive
    assert (entry.op, entry.major, entry.minor, entry.value) == ("Read", 1, 0, 7)
    assert [(n.name, n.rx_bytes, n.tx_dropped) for n in m.network] == [("eth0", 10, 1)]


def test_protobuf_reads_what_the_shim_writes() -> None:
    packed = Any_.pack(cgroups.metrics_from_runc(RUNC_STATS))
    assert packed.type_url == "io.containerd.cgroups.v1.Metrics"
    m = metrics_pb2.Metrics.FromString(packed.value)
    assert m.memory.usage.usage == 512000 and m.memory.total_cache == 8192
    assert list(m.cpu.usage.per_cpu) == [12478218, 3138080]
    assert m.pids.current == 1 and m.HasField("pids")
    assert m.blkio.io_service_bytes_recursive[0].op == "Read"
    # and back: protobuf's packed per_cpu is read by the stdlib codec
    again = cgroups.Metrics.decode(m.SerializeToString())
    assert again == cgroups.metrics_from_runc(RUNC_STATS)


def test_missing_sections_stay_unset() -> None:
    m = cgroups.metrics_from_runc({"pids": {"current": 3, "limit": 10}})
    assert m.cpu is None and m.memory is None and m.blkio is None and m.hugetlb == []
    assert m.pids is not None and m.pids.limit == 10
    # nonsense values from a foreign runtime do not break the encoding
    odd = cgroups.metrics_from_runc({"memory": {"usage": "x", "raw": {"cache": -1}}})
    assert odd.memory is not None and odd.memory.usage == cgroups.MemoryEntry()
    assert odd.memory.cache == 0
    cgroups.Metrics.decode(odd.encode())
