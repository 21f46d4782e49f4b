"""The CVE-2019-5736 class: while init waits in the created state it runs the host's
Python interpreter; nothing in the container may reach it through /proc/1/exe or
/proc/1/fd, and no host descriptor leaks into the container."""

from __future__ import annotations

import json
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
RUNC = str(REPO / ".venv" / "bin" / "skiff-runc")
LAYOUT = REPO / "build" / "images" / "busybox-oci"


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
    spec["process"]["args"] = ["true"]
    (tmp_path / "bundle" / "config.json").write_text(json.dumps(spec))
    return tmp_path / "bundle"


def test_waiting_init_is_out_of_reach(bundle: Path, tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    cid = "sec-" + uuid.uuid4().hex[:8]
    base = [RUNC, "--root", state]
    try:
        subprocess.run(
            [*base, "create", "--bundle", str(bundle), cid],
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        host_pid = json.loads(
            subprocess.run([*base, "state", cid], check=True, capture_output=True).stdout
        )["pid"]
        # init is still the host interpreter, waiting on the exec FIFO
        assert "python" in Path(f"/proc/{host_pid}/exe").resolve().name
        probe = subprocess.run(
            [
                *base,
                "exec",
                "--user",
                "0:0",
                cid,
                "sh",
                "-c",
                "readlink /proc/1/exe; echo exe=$?; readlink /proc/1/fd/3; echo fd=$?; "
                "cat /proc/1/cmdline >/dev/null; ls /proc/self/fd",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert probe.returncode == 0, probe.stderr
        out = probe.stdout
        # the default spec keeps CAP_SYS_PTRACE out: a non-dumpable init refuses both
        assert "exe=1" in out, out
        assert "fd=1" in out, out
        assert "python" not in out
        # the exec'd shell holds stdio and the one descriptor ls opens, nothing of the host
        fds = out.strip().splitlines()[-1].split()
        assert set(fds) <= {"0", "1", "2", "3"}, fds
    finally:
        subprocess.run([*base, "delete", "--force", cid], capture_output=True)


def test_lsm_labels_ignored_with_a_warning(bundle: Path, tmp_path: Path) -> None:
    if Path("/sys/kernel/security/apparmor").exists():
        pytest.skip("this host has AppArmor: the profile would be applied, not ignored")
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["apparmorProfile"] = "skiff-test-profile"
    spec["process"]["selinuxLabel"] = "system_u:system_r:container_t:s0"
    spec["process"]["args"] = ["echo", "ran"]
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = "lsm-" + uuid.uuid4().hex[:8]
    state = str(tmp_path / "state")
    res = subprocess.run(
        [RUNC, "--root", state, "run", "--bundle", str(bundle), cid],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    subprocess.run([RUNC, "--root", state, "delete", "--force", cid], capture_output=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ran\n"
    assert "apparmor is not enabled on this host" in res.stderr
    assert "selinux is not enabled on this host" in res.stderr
    assert "level=warning" in res.stderr
