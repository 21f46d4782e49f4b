"""cgroup v2 in skiff-runc. This host is hybrid (v1 controllers, a cgroup2 mount with
none), so v2 is tested twice: the core (join, freeze, remove) for real on a fresh
cgroup2 mount, and the controller files against a directory that mimics cgroup2."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.runtime.cgroups import Manager

REPO = Path(__file__).resolve().parents[3]
RUNC = str(REPO / ".venv" / "bin" / "skiff-runc")
LAYOUT = REPO / "build" / "images" / "busybox-oci"


def test_v2_limits_written_to_cgroup2_files(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / ".skiff-fake-cgroup2").write_text("")
    (root / "cgroup.controllers").write_text("cpuset cpu memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    manager = Manager.for_container("/skiff/t1", "t1", str(root))
    assert manager.unified
    made = manager.create()
    assert made == [str(root / "skiff"), str(root / "skiff" / "t1")]
    manager.apply(
        {
            "memory": {"limit": 100 << 20, "swap": 200 << 20, "reservation": 50 << 20},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0"},
            "pids": {"limit": 10},
            "unified": {"memory.high": "max"},
        }
    )
    leaf = root / "skiff" / "t1"
    read = lambda name: (leaf / name).read_text()  # noqa: E731
    assert read("memory.max") == str(100 << 20)
    assert read("memory.swap.max") == str(100 << 20)  # v1's memsw is memory + swap
    assert read("memory.low") == str(50 << 20)
    assert read("cpu.weight") == "39"  # shares 1024 -> weight, as runc converts
    assert read("cpu.max") == "50000 100000"
    assert read("cpuset.cpus") == "0"
    assert read("pids.max") == "10"
    assert read("memory.high") == "max"
    assert (root / "cgroup.subtree_control").read_text() == "+cpuset +cpu +memory +pids"
    manager.apply({"pids": {"limit": 0}, "memory": {"limit": -1}})
    assert read("pids.max") == "max"
    assert read("memory.max") == "max"
    manager.freeze()
    assert read("cgroup.freeze") == "1"
    manager.thaw()
    assert read("cgroup.freeze") == "0"


@pytest.fixture
def cgroup2_mount() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting cgroup2 needs root")
    mnt = Path(tempfile.mkdtemp(prefix="skiff-cg2-"))
    res = subprocess.run(["mount", "-t", "cgroup2", "none", str(mnt)], capture_output=True)
    if res.returncode != 0:
        mnt.rmdir()
        pytest.skip(f"this kernel refuses a cgroup2 mount: {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    if not (LAYOUT / "index.json").exists():
        pytest.skip("build/images/busybox-oci is missing: run `make images`")
    index = json.loads((LAYOUT / "index.json").read_text())
    blob = lambda d: LAYOUT / "blobs" / d.replace(":", "/")  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    rootfs = tmp_path / "bundle" / "rootfs"
    rootfs.mkdir(parents=True)
    for layer in manifest["layers"]:
        with tarfile.open(blob(layer["digest"])) as tar:
            tar.extractall(rootfs)
    subprocess.run([RUNC, "spec", "--bundle", str(tmp_path / "bundle")], check=True)
    spec = json.loads((tmp_path / "bundle" / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["sleep", "60"]
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(spec))
    return tmp_path / "bundle"


def test_v2_container_joins_freezes_and_cleans_up(
    cgroup2_mount: Path, bundle: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    cid = "cg2-" + uuid.uuid4().hex[:8]
    base = [RUNC, "--root", str(state), "--cgroup-root", str(cgroup2_mount)]
    try:
        subprocess.run(
            [*base, "run", "-d", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        st = json.loads(
            subprocess.run([*base, "state", cid], check=True, capture_output=True).stdout
        )
        leaf = cgroup2_mount / cid
        assert str(st["pid"]) in (leaf / "cgroup.procs").read_text().split()
        # the container sees its own cgroup as the cgroup2 root through /proc/self/cgroup
        subprocess.run([*base, "pause", cid], check=True)
        assert "frozen 1" in (leaf / "cgroup.events").read_text()
        st = json.loads(
            subprocess.run([*base, "state", cid], check=True, capture_output=True).stdout
        )
        assert st["status"] == "paused"
        subprocess.run([*base, "resume", cid], check=True)
        deadline = time.monotonic() + 5
        while "frozen 1" in (leaf / "cgroup.events").read_text() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "frozen 0" in (leaf / "cgroup.events").read_text()
        subprocess.run([*base, "delete", "--force", cid], check=True)
        assert not leaf.exists()
    finally:
        subprocess.run([*base, "delete", "--force", cid], capture_output=True)
        if (cgroup2_mount / cid).exists():
            (cgroup2_mount / cid).rmdir()
