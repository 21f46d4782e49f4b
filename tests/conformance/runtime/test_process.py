"""The process section of config.json, checked from inside the container: user,
umask, env, cwd, capabilities, noNewPrivileges, rlimits, oomScoreAdj, sysctl.

Runtime CLI boundary of DESIGN.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_harness import Bundle, Runtime

pytestmark = pytest.mark.root

CAP_BITS = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_KILL": 5,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_SYS_ADMIN": 21,
    "CAP_AUDIT_WRITE": 29,
}


def capmask(*names: str) -> str:
    value = 0
    for name in names:
        value |= 1 << CAP_BITS[name]
    return f"{value:016x}"


def status_fields(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


def test_user_groups_and_umask(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o027}
    bundle.shell(
        "id -u; id -g; grep Groups /proc/self/status; umask; touch /tmp/f; stat -c %a /tmp/f"
    )
    out = runtime.run_ok(bundle).splitlines()
    assert out[0] == "1000"
    assert out[1] == "1000"
    assert out[2].split()[1:] == ["10", "20"]
    assert out[3] == "0027"
    assert out[4] == "640"


def test_user_without_additional_gids_has_no_groups(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 65534, "gid": 65534}
    bundle.shell("id -u; id -g; grep Groups /proc/self/status")
    out = runtime.run_ok(bundle).splitlines()
    assert out[:2] == ["65534", "65534"]
    assert out[2].split()[1:] == []


def test_default_umask(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("umask")
    assert runtime.run_ok(bundle).strip() == "0022"


def test_env(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["env"] = ["PATH=/bin", "FOO=bar", "WITH_EQUALS=a=b", "EMPTY="]
    bundle.shell("env")
    env = dict(line.split("=", 1) for line in runtime.run_ok(bundle).splitlines())
    assert env["FOO"] == "bar"
    assert env["WITH_EQUALS"] == "a=b"
    assert env["EMPTY"] == ""
    assert env["PATH"] == "/bin"
    # runc adds HOME from the user's passwd entry when the config has none.
    assert env["HOME"] == "/root"


def test_home_for_non_root_user(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.shell("echo $HOME")
    home = runtime.run_ok(bundle).strip()
    passwd = (bundle.rootfs / "etc" / "passwd").read_text().splitlines()
    entry = next(line.split(":") for line in passwd if line.split(":")[2] == "1000")
    assert home == entry[5]


def test_cwd(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["cwd"] = "/etc"
    bundle.shell("pwd")
    assert runtime.run_ok(bundle).strip() == "/etc"


def test_cwd_created_when_missing(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["cwd"] = "/does/not/exist"
    bundle.shell("pwd")
    assert runtime.run_ok(bundle).strip() == "/does/not/exist"


def test_args_are_not_split_or_expanded(runtime: Runtime, bundle: Bundle) -> None:
    bundle.set_args("echo", "two  spaces", "$HOME", "*")
    assert runtime.run_ok(bundle) == "two  spaces $HOME *\n"


def test_default_capabilities_as_root(runtime: Runtime, bundle: Bundle) -> None:
    bundle.shell("cat /proc/self/status")
    st = status_fields(runtime.run_ok(bundle))
    caps = capmask(*bundle.process["capabilities"]["bounding"])
    assert st["CapBnd"] == caps
    assert st["CapPrm"] == caps
    assert st["CapEff"] == caps
    # No inheritable set in the config, so no ambient capability can be raised.
    assert st["CapInh"] == capmask()
    assert st["CapAmb"] == capmask()


def test_five_capability_sets_for_non_root(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"],
    }
    bundle.shell("cat /proc/self/status")
    st = status_fields(runtime.run_ok(bundle))
    assert st["CapBnd"] == capmask(
        "CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"
    )
    assert st["CapInh"] == capmask("CAP_KILL", "CAP_NET_BIND_SERVICE")
    # execve of an unprivileged file by a non-root user keeps only the ambient set.
    assert st["CapAmb"] == capmask("CAP_KILL")
    assert st["CapPrm"] == capmask("CAP_KILL")
    assert st["CapEff"] == capmask("CAP_KILL")


def test_capability_is_in_effect(runtime: Runtime, make_bundle) -> None:  # type: ignore[no-untyped-def]
    # CAP_CHOWN decides whether root may give a file away.
    with_cap = make_bundle()
    for capset in ("bounding", "effective", "permitted"):
        with_cap.process["capabilities"][capset].append("CAP_CHOWN")
    with_cap.shell("touch /tmp/f && chown 1000 /tmp/f && echo chowned")
    assert runtime.run_ok(with_cap).strip() == "chowned"

    without = make_bundle()
    without.shell("touch /tmp/f && chown 1000 /tmp/f && echo chowned")
    res = runtime.run(without)
    assert res.returncode != 0
    assert "chowned" not in res.stdout
    assert "Operation not permitted" in res.stderr


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges(runtime: Runtime, bundle: Bundle, nnp: bool) -> None:
    bundle.process["noNewPrivileges"] = nnp
    bundle.shell("grep NoNewPrivs /proc/self/status")
    assert runtime.run_ok(bundle).split() == ["NoNewPrivs:", "1" if nnp else "0"]


def test_rlimits(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    bundle.shell("ulimit -n; cat /proc/self/limits")
    out = runtime.run_ok(bundle).splitlines()
    assert out[0] == "1000"
    limits = {line[:26].strip(): line[26:].split() for line in out[2:]}
    assert limits["Max open files"][:2] == ["1000", "2000"]
    assert limits["Max processes"][:2] == ["300", "400"]
    assert limits["Max core file size"][:2] == ["0", "0"]


def test_oom_score_adj(runtime: Runtime, bundle: Bundle) -> None:
    bundle.process["oomScoreAdj"] = 123
    bundle.shell("cat /proc/self/oom_score_adj")
    assert runtime.run_ok(bundle).strip() == "123"


def test_sysctl(runtime: Runtime, bundle: Bundle) -> None:
    host_forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    host_shmmni = Path("/proc/sys/kernel/shmmni").read_text()
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    bundle.shell("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni")
    assert runtime.run_ok(bundle).split() == ["1", "1234"]
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == host_forward
    assert Path("/proc/sys/kernel/shmmni").read_text() == host_shmmni


def test_sysctl_of_host_namespace_is_refused(runtime: Runtime, bundle: Bundle) -> None:
    # A network sysctl needs a private network namespace, else it would change the host.
    bundle.drop_namespace("network")
    bundle.config["mounts"] = [
        m for m in bundle.config["mounts"] if m["type"] not in ("sysfs", "cgroup")
    ]
    before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": "0" if before.strip() == "1" else "1"}
    bundle.shell("echo ran")
    res = runtime.run(bundle)
    assert res.returncode != 0
    assert "ran" not in res.stdout
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == before
