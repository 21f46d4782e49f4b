"""Task metrics through skiff-containerd: skiff-ctr and Debian's ctr, each on a
task of skiff-shim and one of containerd-shim-runc-v2, print the same table."""

from __future__ import annotations

import json
import re
import subprocess

from supervisor_daemon import DAEMON, IMAGE, Supervisor

ROWS = [
    "memory.usage_in_bytes",
    "memory.limit_in_bytes",
    "memory.stat.cache",
    "cpuacct.usage",
    "cpuacct.usage_percpu",
    "pids.current",
    "pids.limit",
]


def parse_metrics(out: str, container_id: str) -> dict[str, str]:
    lines = out.split("\n")
    assert lines[0].split() == ["ID", "TIMESTAMP"], out
    assert lines[1].split()[0] == container_id, out
    assert lines[2] == "" and lines[3].split() == ["METRIC", "VALUE"], out
    rows = {}
    for line in lines[4:]:
        if line:
            name, value = line.split(None, 1)
            rows[name] = value.strip()
    assert list(rows) == ROWS, out
    check_layout(lines, container_id)
    return rows


def check_layout(lines: list[str], container_id: str) -> None:
    """Go's tabwriter (padding 4, cells tab-terminated): each block's cells padded
    to the block's widest plus four, trailing cells too, so a block's lines are
    equally long."""
    id_width = max(len("ID"), len(container_id)) + 4
    assert lines[0].index("TIMESTAMP") == id_width and lines[1][id_width - 1] == " ", lines
    assert len(lines[0]) == len(lines[1]) and lines[0].endswith("    "), lines
    name_width = len("memory.usage_in_bytes") + 4
    block = [line for line in lines[3:] if line]
    assert len({len(line) for line in block}) == 1 and block[0].endswith("    "), block
    for line in block:
        assert line[name_width - 1] == " " and line[name_width] != " ", block


def shape(out: str) -> list[str]:
    return [re.sub(r"\d+", "N", re.sub(r" +", " ", line)).strip() for line in out.split("\n")]


def test_metrics_through_skiff_containerd(supervisor: Supervisor) -> None:
    sup = supervisor

    def skiff_ctr(*args: str) -> str:
        cmd = [str(DAEMON.parent / "skiff-ctr"), "-a", sup.address, "-n", sup.namespace, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, f"{' '.join(args)} -> {p.returncode}: {p.stderr}"
        return p.stdout

    sup.import_image()
    sup.ctr(*sup.run_args("io.containerd.skiff.v1"), "-d", IMAGE, "sk1", "sleep", "300")
    sup.ctr(*sup.run_args(), "-d", IMAGE, "rc1", "sleep", "300")
    tables = {}
    for cid in ("sk1", "rc1"):
        ours = skiff_ctr("tasks", "metrics", cid)
        theirs = sup.ctr("tasks", "metrics", cid).stdout
        for out in (ours, theirs):
            rows = parse_metrics(out, cid)
            assert int(rows["memory.usage_in_bytes"]) > 0, out
            assert int(rows["cpuacct.usage"]) > 0, out
            assert rows["pids.current"] == "1", out
        assert shape(ours) == shape(theirs), (ours, theirs)
        tables[cid] = shape(ours)
        doc = json.loads(skiff_ctr("tasks", "metrics", "--format", "json", cid))
        ctr_doc = json.loads(sup.ctr("tasks", "metrics", "--format", "json", cid).stdout)
        assert doc.keys() == ctr_doc.keys() and doc["pids"] == ctr_doc["pids"] == {"current": 1}
        assert doc["memory"]["usage"]["usage"] > 0 and doc["memory"]["rss"] > 0
    # both shims fill the same rows; only the container id's width differs
    assert tables["sk1"][3:] == tables["rc1"][3:]
