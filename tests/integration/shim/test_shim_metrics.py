"""`ctr tasks metrics` through skiff-shim on Debian's containerd, beside containerd-shim-runc-v2.

The shim answers Stats with io.containerd.cgroups.v1.Metrics made from the
runtime's `events --stats`; Debian's ctr must decode it and print the same rows
it prints for runc's own shim, and skiff-ctr must print what ctr prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from shim_containerd import IMAGE, VENV_BIN, Containerd

pytestmark = pytest.mark.root

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
    """The METRIC/VALUE rows of ctr's table, after checking its ID/TIMESTAMP head."""
    lines = out.split("\n")
    assert lines[0].split() == ["ID", "TIMESTAMP"], out
    assert lines[1].split()[0] == container_id, out
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC", lines[1]), out
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
    """The table with every number replaced: what must not differ between shims."""
    return [re.sub(r"\d+", "N", re.sub(r" +", " ", line)).strip() for line in out.split("\n")]


def skiff_ctr(cd: Containerd, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(VENV_BIN / "skiff-ctr"), "-a", cd.address, "-n", cd.namespace, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("binary", ["runc", "skiff-runc"])
def test_ctr_metrics_through_skiff_shim(
    containerd: Containerd, tmp_path: Path, binary: str
) -> None:
    cd = containerd
    config = tmp_path / "shim.toml"
    config.write_text(f'BinaryName = "{binary}"\n')
    cd.ctr(*cd.run_args("-d", "--runtime-config-path", str(config), IMAGE, "m1", "sleep", "300"))
    assert re.search(rf"create m1: runtime /\S+/{binary} root", cd.logs())
    out = cd.ctr("tasks", "metrics", "m1").stdout
    rows = parse_metrics(out, "m1")
    assert int(rows["memory.usage_in_bytes"]) > 0
    assert int(rows["memory.limit_in_bytes"]) > 0
    assert int(rows["cpuacct.usage"]) > 0
    assert rows["pids.current"] == "1"
    per_cpu = rows["cpuacct.usage_percpu"]
    assert re.fullmatch(r"\[\d+( \d+)*\]", per_cpu), per_cpu

    # a second process in the container shows in the pids count
    cd.ctr("tasks", "exec", "-d", "--exec-id", "s2", "m1", "sleep", "300")
    rows = parse_metrics(cd.ctr("tasks", "metrics", "m1").stdout, "m1")
    assert rows["pids.current"] == "2"

    # the JSON form is ctr's decoding of every field we sent
    doc = json.loads(cd.ctr("tasks", "metrics", "--format", "json", "m1").stdout)
    assert doc["pids"]["current"] == 2
    assert doc["memory"]["usage"]["usage"] > 0 and doc["memory"]["rss"] > 0
    assert doc["cpu"]["usage"]["total"] > 0 and len(doc["cpu"]["usage"]["per_cpu"]) >= 1

    # skiff-ctr prints what ctr prints, numbers aside (they move between calls)
    ours = skiff_ctr(cd, "tasks", "metrics", "m1")
    assert ours.returncode == 0, ours.stderr
    assert shape(ours.stdout) == shape(cd.ctr("tasks", "metrics", "m1").stdout)
    assert parse_metrics(ours.stdout, "m1")["pids.current"] == "2"
    ours_json = json.loads(skiff_ctr(cd, "tasks", "metrics", "--format", "json", "m1").stdout)
    assert ours_json.keys() == doc.keys() and ours_json["pids"] == doc["pids"]


def test_same_table_as_runc_v2_shim(containerd: Containerd) -> None:
    cd = containerd
    cd.ctr(*cd.run_args("-d", IMAGE, "ours", "sleep", "300"))
    cd.ctr(
        "run",
        "-d",
        "--runtime",
        "io.containerd.runc.v2",
        "--runc-root",
        str(cd.tmp / "runc"),
        "--fifo-dir",
        str(cd.fifo_dir),
        IMAGE,
        "theirs",
        "sleep",
        "300",
    )
    ours = cd.ctr("tasks", "metrics", "ours").stdout
    theirs = cd.ctr("tasks", "metrics", "theirs").stdout
    assert shape(ours.replace("ours", "theirs", 1)) == shape(theirs), (ours, theirs)
    a, b = parse_metrics(ours, "ours"), parse_metrics(theirs, "theirs")
    assert a["pids.current"] == b["pids.current"] == "1"
    assert a["memory.limit_in_bytes"] == b["memory.limit_in_bytes"]
    # the same busybox sleep takes about the same memory either way (within 4x)
    usage_a, usage_b = int(a["memory.usage_in_bytes"]), int(b["memory.usage_in_bytes"])
    assert usage_b / 4 < usage_a < usage_b * 4, (usage_a, usage_b)
    json_ours = json.loads(cd.ctr("tasks", "metrics", "--format", "json", "ours").stdout)
    json_theirs = json.loads(cd.ctr("tasks", "metrics", "--format", "json", "theirs").stdout)
    # the same sections, memory.oom_control's included (which runc's stats lack)
    assert json_ours.keys() == json_theirs.keys() >= {"pids", "cpu", "memory", "memory_oom_control"}
    assert set(json_ours["memory"]) >= {"usage", "swap", "kernel", "rss", "total_rss"}


def test_metrics_of_a_stopped_task(containerd: Containerd) -> None:
    """Between exit and delete the cgroup stays and runc-v2 still reports it; so do we."""
    cd = containerd
    cd.ctr(*cd.run_args("-d", IMAGE, "gone", "true"))
    cd.ctr(
        "run", "-d", "--runtime", "io.containerd.runc.v2", "--runc-root", str(cd.tmp / "runc"),
        "--fifo-dir", str(cd.fifo_dir), IMAGE, "gone-runc", "true",
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while cd.ctr("tasks", "ls").stdout.count("STOPPED") < 2:
        assert time.monotonic() < deadline, cd.ctr("tasks", "ls").stdout
        time.sleep(0.05)
    ours = cd.ctr("tasks", "metrics", "gone", timeout=20).stdout
    theirs = cd.ctr("tasks", "metrics", "gone-runc", timeout=20).stdout
    a, b = parse_metrics(ours, "gone"), parse_metrics(theirs, "gone-runc")
    assert a["pids.current"] == b["pids.current"] == "0"
    assert int(a["cpuacct.usage"]) > 0 and int(b["cpuacct.usage"]) > 0
    # once deleted there is nothing to report, and ctr says so quickly
    cd.ctr("tasks", "rm", "gone")
    started = time.monotonic()
    result = cd.ctr("tasks", "metrics", "gone", check=False, timeout=20)
    assert time.monotonic() - started < 5
    assert result.returncode != 0 and "not found" in result.stderr, result.stderr
