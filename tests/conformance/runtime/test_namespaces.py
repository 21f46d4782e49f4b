"""Namespaces: new or joined by path, hostname/domainname, user namespace mappings.

Runtime CLI boundary of DESIGN.md; the namespace a container is in is read from
/proc/self/ns inside it and compared with the host's.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from runtime_harness import RUNTIME_NAME, Bundle, Runtime, host_ns, runtime_version

pytestmark = pytest.mark.root

# OCI namespace type -> (/proc/self/ns name, unshare flag)
NAMESPACES = {
    "ipc": ("ipc", "--ipc"),
    "uts": ("uts", "--uts"),
    "network": ("net", "--net"),
    "cgroup": ("cgroup", "--cgroup"),
}


def ns_inside(runtime: Runtime, bundle: Bundle, name: str) -> str:
    bundle.shell(f"readlink /proc/self/ns/{name}")
    return runtime.run_ok(bundle).strip()


@pytest.mark.parametrize("ns_type", sorted(NAMESPACES))
def test_new_namespace(runtime: Runtime, bundle: Bundle, ns_type: str) -> None:
    name, _ = NAMESPACES[ns_type]
    bundle.set_namespace(ns_type)
    assert ns_inside(runtime, bundle, name) != host_ns(name)


@pytest.mark.parametrize("ns_type", sorted(NAMESPACES))
def test_no_namespace_shares_the_hosts(runtime: Runtime, bundle: Bundle, ns_type: str) -> None:
    name, _ = NAMESPACES[ns_type]
    bundle.drop_namespace(ns_type)
    if ns_type == "uts":
        del bundle.config["hostname"]  # a hostname needs a private uts namespace
    if ns_type == "network":
        # sysfs can only be mounted in a network namespace the container owns.
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "sysfs"]
        bundle.config["mounts"] = [m for m in bundle.config["mounts"] if m["type"] != "cgroup"]
    assert ns_inside(runtime, bundle, name) == host_ns(name)


@pytest.mark.parametrize("ns_type", sorted(NAMESPACES))
def test_join_namespace_by_path(
    runtime: Runtime, bundle: Bundle, holder: Callable[..., int], ns_type: str
) -> None:
    name, flag = NAMESPACES[ns_type]
    pid = holder(flag)
    path = f"/proc/{pid}/ns/{name}"
    assert host_ns(name, pid) != host_ns(name)
    bundle.set_namespace(ns_type, path)
    if ns_type == "uts":
        del bundle.config["hostname"]
    assert ns_inside(runtime, bundle, name) == host_ns(name, pid)


def test_join_named_netns(runtime: Runtime, bundle: Bundle, netns: str) -> None:
    path = f"/var/run/netns/{netns}"
    # A per-netns setting marks this namespace as the one made by the test.
    subprocess.run(
        ["ip", "netns", "exec", netns, "sysctl", "-qw", "net.ipv4.ip_default_ttl=99"], check=True
    )
    bundle.set_namespace("network", path)
    bundle.shell("readlink /proc/self/ns/net; cat /proc/sys/net/ipv4/ip_default_ttl")
    out = runtime.run_ok(bundle)
    expected = os.readlink(f"/proc/{os.getpid()}/ns/net")
    inode = os.stat(path).st_ino
    assert out.splitlines()[0] == f"net:[{inode}]"
    assert out.splitlines()[0] != expected
    assert out.splitlines()[1] == "99"


def test_new_netns_has_only_loopback(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("ip -o link show")
    links = [line.split(":")[1].strip() for line in runtime.run_ok(bundle).splitlines()]
    assert links == ["lo"]


def test_join_pid_namespace_of_another_container(
    runtime: Runtime, make_bundle: Callable[..., Bundle]
) -> None:
    first = make_bundle()
    pid = runtime.start_running(first)
    second = make_bundle()
    second.set_namespace("pid", f"/proc/{pid}/ns/pid")
    second.shell("readlink /proc/self/ns/pid; echo $$; ps -o comm")
    out = runtime.run_ok(second).splitlines()
    assert out[0] == host_ns("pid", pid)
    assert out[1] != "1", "a process joining a pid namespace cannot be its init"
    assert "sleep" in out[2:]


def test_hostname(runtime: Runtime, bundle: Bundle) -> None:
    bundle.config["hostname"] = "conformance-host"
    bundle.shell("hostname; cat /proc/sys/kernel/hostname")
    assert runtime.run_ok(bundle).splitlines() == ["conformance-host"] * 2
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "conformance-host"


def test_domainname(runtime: Runtime, bundle: Bundle) -> None:
    if runtime_version() and runtime_version() < (1, 2) and RUNTIME_NAME == "runc":
        pytest.skip("runc before 1.2 ignores the domainname field")
    bundle.config["domainname"] = "example.test"
    bundle.shell("cat /proc/sys/kernel/domainname")
    assert runtime.run_ok(bundle).strip() == "example.test"


def test_mount_namespace_is_private(runtime: Runtime, bundle: Bundle) -> None:
    for capset in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][capset].append("CAP_SYS_ADMIN")
    bundle.shell("readlink /proc/self/ns/mnt; mount -t tmpfs conformance-mnt /tmp && echo mounted")
    out = runtime.run_ok(bundle).splitlines()
    assert out[0] != host_ns("mnt")
    assert out[1] == "mounted"
    assert "conformance-mnt" not in Path("/proc/self/mounts").read_text()


def test_cgroup_namespace_hides_host_paths(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_namespace("cgroup")
    bundle.shell("cat /proc/self/cgroup")
    for line in runtime.run_ok(bundle).splitlines():
        assert line.split(":", 2)[2] == "/", f"cgroup path visible from inside: {line}"


def userns_supported() -> str | None:
    res = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
    if res.returncode != 0:
        return f"this kernel refuses user namespaces: {res.stderr.decode().strip()}"
    return None


def test_user_namespace_mappings(runtime: Runtime, bundle: Bundle) -> None:
    reason = userns_supported()
    if reason:
        pytest.skip(reason)
    bundle.set_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    # The rootfs must belong to the mapped root, as with any user-namespaced bundle.
    subprocess.run(["chown", "-R", "-h", "100000:200000", str(bundle.rootfs)], check=True)
    bundle.shell(
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c '%u:%g' /bin/busybox"
    )
    out = [" ".join(line.split()) for line in runtime.run_ok(bundle).splitlines()]
    assert out == ["0 100000 65536", "0 200000 65536", "0", "0", "0:0"]


def test_user_namespace_host_ids(runtime: Runtime, bundle: Bundle) -> None:
    reason = userns_supported()
    if reason:
        pytest.skip(reason)
    bundle.set_namespace("user")
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    subprocess.run(["chown", "-R", "-h", "100000:100000", str(bundle.rootfs)], check=True)
    runtime.start_running(bundle)
    pid = runtime.state(bundle.id)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["100000"] * 4
    assert host_ns("user", pid) != host_ns("user")
