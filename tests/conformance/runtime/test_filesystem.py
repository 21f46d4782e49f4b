"""The container's filesystem: mounts and their flags, devices, masked and
read-only paths, a read-only root; read back from inside the container.

Runtime CLI boundary of DESIGN.md.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from runtime_harness import DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, Bundle, Runtime

pytestmark = pytest.mark.root


def mountinfo_entry(mountinfo: str, target: str) -> tuple[str, str, str]:
    """(per-mount options, fstype, super options) of the last mount on target."""
    found = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10:
            continue  # not a mountinfo line
        if fields[4] == target:
            sep = fields.index("-")
            found = (fields[5], fields[sep + 1], fields[sep + 3])
    assert found, f"{target} is not a mount point:\n{mountinfo}"
    return found


def test_bind_mount_flags(runtime: Runtime, bundle: Bundle, workdir: Path) -> None:
    src = workdir / "shared"
    src.mkdir()
    (src / "hello").write_text("from the host\n")
    shutil.copy2(bundle.rootfs / "bin" / "busybox", src / "busybox")
    bundle.add_mount("/mnt/ro", "bind", str(src), ["rbind", "ro", "nosuid", "nodev", "noexec"])
    bundle.add_mount("/mnt/rw", "bind", str(src), ["rbind", "rw"])
    bundle.shell(
        "cat /proc/self/mountinfo > /tmp/mi; cat /mnt/ro/hello;"
        " touch /mnt/ro/x 2>&1 || echo ro-refused;"
        " /mnt/ro/busybox true 2>&1 || echo exec-refused;"
        " touch /mnt/rw/written && echo rw-ok; /mnt/rw/busybox true && echo exec-ok;"
        " cat /tmp/mi"
    )
    out = runtime.run_ok(bundle)
    assert "from the host" in out
    assert "ro-refused" in out and "Read-only file system" in out
    assert "exec-refused" in out
    assert "rw-ok" in out and "exec-ok" in out
    assert (src / "written").exists()
    assert not (src / "x").exists()
    opts = mountinfo_entry(out, "/mnt/ro")[0].split(",")
    for flag in ("ro", "nosuid", "nodev", "noexec"):
        assert flag in opts, f"/mnt/ro lacks {flag}: {opts}"
    assert "rw" in mountinfo_entry(out, "/mnt/rw")[0].split(",")


def test_bind_mount_of_a_file(runtime: Runtime, bundle: Bundle, workdir: Path) -> None:
    src = workdir / "conf-file"
    src.write_text("file contents\n")
    bundle.add_mount("/etc/conf-file", "bind", str(src), ["bind", "ro"])
    bundle.shell("cat /etc/conf-file")
    assert runtime.run_ok(bundle) == "file contents\n"


def test_tmpfs_with_options(runtime: Runtime, bundle: Bundle) -> None:
    bundle.add_mount("/mnt/t", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1770", "size=2m"])
    bundle.shell("stat -c %a /mnt/t; cat /proc/self/mountinfo")
    out = runtime.run_ok(bundle)
    assert out.splitlines()[0] == "1770"
    opts, fstype, sopts = mountinfo_entry(out, "/mnt/t")
    assert fstype == "tmpfs"
    assert "nosuid" in opts and "nodev" in opts
    assert "size=2048k" in sopts.split(",")
    assert "mode=1770" in sopts.split(",")


def test_tmpfs_size_is_enforced(runtime: Runtime, bundle: Bundle) -> None:
    bundle.add_mount("/mnt/t", "tmpfs", "tmpfs", ["size=1m"])
    bundle.shell("dd if=/dev/zero of=/mnt/t/big bs=1k count=2048 2>&1; echo rc=$?")
    out = runtime.run_ok(bundle)
    assert "No space left on device" in out
    assert "rc=1" in out


def test_default_mounts(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("cat /proc/self/mountinfo")
    out = runtime.run_ok(bundle)
    assert mountinfo_entry(out, "/proc")[1] == "proc"
    assert mountinfo_entry(out, "/dev")[1] == "tmpfs"
    devpts = mountinfo_entry(out, "/dev/pts")
    assert devpts[1] == "devpts"
    assert "ptmxmode=666" in devpts[2] and "gid=5" in devpts[2]
    shm = mountinfo_entry(out, "/dev/shm")
    assert shm[1] == "tmpfs" and "noexec" in shm[0]
    assert mountinfo_entry(out, "/dev/mqueue")[1] == "mqueue"
    sysfs = mountinfo_entry(out, "/sys")
    assert sysfs[1] == "sysfs" and "ro" in sysfs[0].split(",")


def test_cgroup_mount(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("cat /proc/self/mountinfo; echo ---; ls /sys/fs/cgroup")
    out, _, listing = runtime.run_ok(bundle).partition("---\n")
    _opts, fstype, _ = mountinfo_entry(out, "/sys/fs/cgroup")
    if fstype == "cgroup2":
        assert "cgroup.controllers" in listing.split()
        return
    # cgroup v1 (this host): a tmpfs holding one read-only mount per hierarchy,
    # each showing the container's own cgroup.
    assert fstype == "tmpfs"
    for controller in ("memory", "pids", "cpu", "freezer"):
        if not Path(f"/sys/fs/cgroup/{controller}").is_dir():
            continue
        c_opts, c_type, c_sopts = mountinfo_entry(out, f"/sys/fs/cgroup/{controller}")
        assert c_type == "cgroup"
        assert controller in c_sopts.split(",")
        assert "ro" in c_opts.split(",")


def test_mqueue_and_devpts_usable(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("ls -d /dev/pts; ls -d /dev/mqueue; stat -c %a /dev/shm")
    out = runtime.run_ok(bundle).split()
    assert out == ["/dev/pts", "/dev/mqueue", "1777"]


@pytest.mark.parametrize(
    ("name", "major", "minor"),
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ],
)
def test_default_devices(
    runtime: Runtime, bundle: Bundle, name: str, major: int, minor: int
) -> None:
    bundle.shell(f"stat -L -c '%F %t %T %a' /dev/{name}")
    out = runtime.run_ok(bundle).strip()
    assert out == f"character special file {major:x} {minor:x} 666"


def test_default_devices_work(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell(
        "echo x > /dev/null && echo null-ok; head -c 4 /dev/zero | wc -c;"
        " head -c 4 /dev/urandom | wc -c; (echo x > /dev/full) 2>&1 || echo full-refused;"
        " ls -l /dev/ptmx; for l in fd stdin stdout stderr; do readlink /dev/$l; done"
    )
    out = runtime.run_ok(bundle).splitlines()
    assert out[0] == "null-ok"
    assert out[1:3] == ["4", "4"]
    assert "No space left on device" in out[3] or "full-refused" in out
    assert "ptmx" in "\n".join(out)
    assert out[-4:] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"]


def test_configured_device(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["devices"] = [
        {
            "path": "/dev/conf-null",
            "type": "c",
            "major": 1,
            "minor": 3,
            "fileMode": 0o620,
            "uid": 1000,
            "gid": 0,
        }
    ]
    bundle.shell("stat -c '%F %t %T %a %u %g' /dev/conf-null; echo x > /dev/conf-null && echo ok")
    out = runtime.run_ok(bundle).splitlines()
    assert out == ["character special file 1 3 620 1000 0", "ok"]


def test_device_cgroup_denies_unlisted_device(runtime: Runtime, make_bundle) -> None:  # type: ignore[no-untyped-def]
    # /dev/kmsg (1:11) is not in the default allowed set, and opening it
    # write-only needs no capability, so only the device cgroup can refuse it.
    major, minor = 1, 11
    device = {
        "path": "/dev/conf-kmsg",
        "type": "c",
        "major": major,
        "minor": minor,
        "fileMode": 0o666,
    }
    script = "exec 3>/dev/conf-kmsg && echo opened"

    denied = make_bundle()
    denied.linux["devices"] = [dict(device)]
    denied.shell(script)
    res = runtime.run(denied)
    assert res.returncode != 0
    assert "opened" not in res.stdout
    assert "Operation not permitted" in res.stderr

    allowed = make_bundle()
    allowed.linux["devices"] = [dict(device)]
    allowed.linux["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
    )
    allowed.shell(script)
    assert runtime.run_ok(allowed).strip() == "opened"


def test_masked_paths(runtime: Runtime, bundle: Bundle) -> None:
    assert bundle.linux["maskedPaths"] == DEFAULT_MASKED_PATHS
    # Only paths this kernel has can be masked (no /proc/kcore without PROC_KCORE).
    files = [p for p in DEFAULT_MASKED_PATHS if Path(p).is_file()]
    dirs = [p for p in DEFAULT_MASKED_PATHS if Path(p).is_dir()]
    assert files and dirs
    bundle.shell(
        "".join(f"echo {p} $(wc -c < {p}); " for p in files)
        + "".join(f"echo {p} $(ls -A {p} | wc -l); " for p in dirs)
    )
    out = runtime.run_ok(bundle).splitlines()
    assert out == [f"{p} 0" for p in files + dirs]
    # The masking is real: the host's /proc/timer_list (or similar) is not empty.
    assert any(Path(p).read_text() for p in files)


def test_custom_masked_path(runtime: Runtime, bundle: Bundle) -> None:
    bundle.linux["maskedPaths"] = ["/etc/passwd", "/bin/../etc/group", "/no/such/path"]
    bundle.shell("wc -c < /etc/passwd; echo done")
    out = runtime.run_ok(bundle).split()
    assert out == ["0", "done"]


def test_readonly_paths(runtime: Runtime, bundle: Bundle) -> None:
    for capset in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][capset].append("CAP_SYS_ADMIN")
    bundle.shell(
        "(echo conf-renamed > /proc/sys/kernel/hostname) 2>&1; hostname; cat /proc/self/mountinfo"
    )
    out = runtime.run_ok(bundle)
    assert "Read-only file system" in out
    assert out.splitlines()[1] == "runc"
    for path in DEFAULT_READONLY_PATHS:
        if not Path(path).exists():
            continue  # this kernel lacks it (no /proc/sysrq-trigger without MAGIC_SYSRQ)
        assert "ro" in mountinfo_entry(out, path)[0].split(","), path


@pytest.mark.parametrize("readonly", [True, False])
def test_root_readonly(runtime: Runtime, bundle: Bundle, readonly: bool) -> None:
    bundle.config["root"]["readonly"] = readonly
    bundle.shell(
        "touch /written 2>&1; echo x > /dev/shm/y && echo shm-ok; cat /proc/self/mountinfo"
    )
    out = runtime.run_ok(bundle)
    root_opts = mountinfo_entry(out, "/")[0].split(",")
    assert "shm-ok" in out  # mounts on top of a read-only root stay writable
    if readonly:
        assert "Read-only file system" in out
        assert "ro" in root_opts
        assert not (bundle.rootfs / "written").exists()
    else:
        assert "rw" in root_opts
        assert (bundle.rootfs / "written").exists()


def test_root_is_pivoted(runtime: Runtime, bundle: Bundle) -> None:
    # Nothing of the host's root is reachable: its mounts are gone from the table.
    bundle.shell("cat /proc/self/mountinfo; ls /")
    out = runtime.run_ok(bundle)
    host_root_entries = set(os.listdir("/")) - set(os.listdir(bundle.rootfs))
    listing = set(out.split())
    assert not (host_root_entries & listing - {"proc", "sys", "dev"}), host_root_entries & listing
    assert mountinfo_entry(out, "/")[1] != "rootfs"


def test_rootfs_files_keep_modes(runtime: Runtime, bundle: Bundle) -> None:
    mode = stat.S_IMODE(os.stat(bundle.rootfs / "tmp").st_mode)
    bundle.shell("stat -c %a /tmp")
    assert runtime.run_ok(bundle).strip() == f"{mode:o}"
