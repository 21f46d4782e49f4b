"""features, spec, logging and bad input: exit status 1, one error, nothing left behind.

Runtime CLI boundary of DESIGN.md. "Nothing left behind" is checked on the host:
no state entry, no cgroup directory, no process and no mount that mentions the
container or its bundle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runtime_harness import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
    Bundle,
    Runtime,
    cgroup_dirs_named,
    mounts_mentioning,
    processes_mentioning,
)

pytestmark = pytest.mark.root


def test_features(runtime: Runtime) -> None:
    feats = json.loads(runtime.ok("features").stdout)
    assert feats["ociVersionMin"].startswith("1.0")
    assert feats["ociVersionMax"].startswith("1.")
    assert set(feats["hooks"]) >= {
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    }
    assert {"bind", "rbind", "ro", "nosuid", "nodev", "noexec"} <= set(feats["mountOptions"])
    linux = feats["linux"]
    assert set(linux["namespaces"]) >= {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"}
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert linux["cgroup"]["v1"] is True
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]


def test_spec_writes_runc_defaults(runtime: Runtime, workdir: Path) -> None:
    target = workdir / "spec-bundle"
    target.mkdir()
    runtime.ok("spec", "--bundle", str(target))
    spec = json.loads((target / "config.json").read_text())
    assert spec["ociVersion"].startswith("1.")
    assert spec["process"]["args"] == ["sh"]
    assert spec["process"]["terminal"] is True
    assert spec["root"] == {"path": "rootfs", "readonly": True}
    assert spec["linux"]["maskedPaths"] == DEFAULT_MASKED_PATHS
    assert spec["linux"]["readonlyPaths"] == DEFAULT_READONLY_PATHS
    assert {n["type"] for n in spec["linux"]["namespaces"]} == {
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
    }
    caps = spec["process"]["capabilities"]
    assert sorted(caps["bounding"]) == ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert spec["process"]["noNewPrivileges"] is True
    destinations = [m["destination"] for m in spec["mounts"]]
    assert destinations == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]


def test_spec_in_current_directory_and_no_overwrite(runtime: Runtime, workdir: Path) -> None:
    target = workdir / "cwd-bundle"
    target.mkdir()
    cwd = os.getcwd()
    os.chdir(target)
    try:
        runtime.ok("spec")
        assert (target / "config.json").exists()
        (target / "config.json").write_text("{}")
        res = runtime("spec")
        assert res.returncode != 0, "spec must not overwrite an existing config.json"
        assert (target / "config.json").read_text() == "{}"
    finally:
        os.chdir(cwd)


def test_spec_rootless(runtime: Runtime, workdir: Path) -> None:
    target = workdir / "rootless"
    target.mkdir()
    runtime.ok("spec", "--rootless", "--bundle", str(target))
    spec = json.loads((target / "config.json").read_text())
    types = {n["type"] for n in spec["linux"]["namespaces"]}
    assert "user" in types
    assert "network" not in types
    assert spec["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    assert spec["linux"]["gidMappings"] == [{"containerID": 0, "hostID": os.getgid(), "size": 1}]
    assert "resources" not in spec["linux"]
    sys_mount = next(m for m in spec["mounts"] if m["destination"] == "/sys")
    assert sys_mount["type"] == "none" and "rbind" in sys_mount["options"]


def test_spec_output_runs(runtime: Runtime, bundle: Bundle) -> None:
    # What `spec` writes is a working config (with the terminal off and a command).
    (bundle.path / "config.json").unlink(missing_ok=True)
    runtime.ok("spec", "--bundle", str(bundle.path))
    spec = json.loads((bundle.path / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["echo", "spec-ok"]
    bundle.config = spec
    assert runtime.run_ok(bundle) == "spec-ok\n"


def test_unknown_command_fails(runtime: Runtime) -> None:
    res = runtime("no-such-command")
    assert res.returncode != 0


def test_json_log_format(runtime: Runtime, workdir: Path) -> None:
    log = workdir / "runtime.log"
    res = runtime(
        "--log", str(log), "--log-format", "json", "create", "--bundle", str(workdir / "nope"), "x"
    )
    assert res.returncode == 1
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    errors = [e for e in entries if e.get("level") == "error"]
    assert errors, entries
    assert errors[-1]["msg"]
    assert "time" in errors[-1]


# ------------------------------------------------------------------ bad input


@pytest.fixture
def leftovers(runtime: Runtime) -> Iterator[Callable[[Bundle], None]]:
    def check(bundle: Bundle) -> None:
        state_dir = runtime.root / bundle.id
        assert not state_dir.exists(), f"state left behind: {state_dir}"
        listed = runtime("list", "-q")
        assert bundle.id not in listed.stdout
        assert cgroup_dirs_named(bundle.id) == [], "cgroup left behind"
        assert processes_mentioning(bundle.id) == [], "process left behind"
        assert processes_mentioning(str(bundle.path)) == [], "process left behind"
        assert mounts_mentioning(str(bundle.path)) == [], "mount left behind"

    yield check


def assert_one_clean_error(res: object) -> None:
    assert res.returncode == 1, res
    stderr = res.stderr
    assert stderr.strip(), "no error message"
    errors = [line for line in stderr.splitlines() if "error" in line.lower()]
    assert errors, stderr


BAD_CONFIGS: dict[str, Callable[[Bundle], None]] = {
    "malformed-json": lambda b: (b.path / "config.json").write_text('{"ociVersion": '),
    "empty-args": lambda b: b.process.__setitem__("args", []),
    "no-process": lambda b: b.config.pop("process"),
    "missing-rootfs": lambda b: b.config["root"].__setitem__("path", "no-such-rootfs"),
    "unknown-namespace": lambda b: b.linux["namespaces"].append({"type": "nosuchns"}),
    "bad-mount-type": lambda b: b.add_mount("/mnt/x", "nosuchfs", "none", []),
    "bad-rlimit": lambda b: b.process.__setitem__(
        "rlimits", [{"type": "RLIMIT_NOSUCH", "soft": 1, "hard": 1}]
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
@pytest.mark.parametrize("command", ["create", "run"])
def test_bad_config(
    runtime: Runtime,
    bundle: Bundle,
    leftovers: Callable[[Bundle], None],
    case: str,
    command: str,
) -> None:
    bundle.write()
    BAD_CONFIGS[case](bundle)
    if case != "malformed-json":
        (bundle.path / "config.json").write_text(json.dumps(bundle.config))
    runtime.ids.add(bundle.id)
    res = runtime(command, "--bundle", str(bundle.path), bundle.id)
    assert_one_clean_error(res)
    leftovers(bundle)


def test_missing_bundle_path(
    runtime: Runtime, bundle: Bundle, leftovers: Callable[[Bundle], None]
) -> None:
    runtime.ids.add(bundle.id)
    res = runtime("create", "--bundle", str(bundle.path / "does-not-exist"), bundle.id)
    assert_one_clean_error(res)
    leftovers(bundle)


def test_duplicate_id(runtime: Runtime, make_bundle: Callable[..., Bundle]) -> None:
    first = make_bundle()
    pid = runtime.start_running(first)
    second = make_bundle()
    second.id = first.id
    res = runtime.create(second, check=False)
    assert_one_clean_error(res)
    # The first container is untouched.
    st = runtime.state(first.id)
    assert st["status"] == "running" and st["pid"] == pid
    assert Path(st["bundle"]) == first.path
    assert processes_mentioning(str(second.path)) == []
    assert mounts_mentioning(str(second.path)) == []


def test_unknown_capability(
    runtime: Runtime, bundle: Bundle, leftovers: Callable[[Bundle], None]
) -> None:
    # runc 1.1 warns and ignores a capability it does not know; refusing the
    # config is also fine. Either way the runtime must say so.
    for capset in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][capset].append("CAP_NO_SUCH_THING")
    bundle.shell("grep CapBnd /proc/self/status")
    res = runtime.run(bundle)
    assert "CAP_NO_SUCH_THING" in res.stderr, res.stderr
    if res.returncode == 0:
        assert res.stdout.split() == ["CapBnd:", "0000000020000420"]
    else:
        assert_one_clean_error(res)
        leftovers(bundle)


def test_invalid_id(runtime: Runtime, bundle: Bundle) -> None:
    bad_id = "../escape"
    bundle.write()
    res = runtime("create", "--bundle", str(bundle.path), bad_id)
    assert res.returncode != 0
    assert not (runtime.root.parent / "escape").exists()


def test_operations_on_unknown_container(runtime: Runtime) -> None:
    for args in (["start"], ["kill"], ["pause"], ["resume"], ["exec"], ["events", "--stats"]):
        cmd = [*args, "no-such-container"] + (["true"] if args == ["exec"] else [])
        res = runtime(*cmd)
        assert res.returncode != 0, args
        assert res.stderr.strip(), args
