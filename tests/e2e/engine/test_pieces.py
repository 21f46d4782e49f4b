"""The container service's pure pieces, without daemons: spec generation, the json-file
log, time parsing, framing, detach keys, ps's status text and the cp path cleaner."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from skiff.engine.api.containers import frame, parse_detach_keys
from skiff.engine.containers.archive import clean
from skiff.engine.containers.logs import JsonLog, parse_time, read_entries, rfc3339
from skiff.engine.containers.spec import DOCKER_CAPS, build_spec, capabilities, seccomp_from_profile
from skiff.engine.containers.views import human_duration
from skiff.errors import InvalidArgument


def spec(config: dict | None = None, host: dict | None = None) -> dict:
    return build_spec(
        cid="a" * 64,
        args=["sh"],
        env=["PATH=/bin"],
        cwd="/",
        uid=0,
        gid=0,
        additional_gids=[],
        config=config or {},
        host=host or {},
        container_dir="/c",
        mounts=[],
        init_path=None,
    )


def test_spec_defaults_and_host_config() -> None:
    s = spec()
    assert s["process"]["capabilities"]["bounding"] == DOCKER_CAPS
    assert s["hostname"] == "a" * 12
    assert {"type": "network"} in s["linux"]["namespaces"]
    assert s["linux"]["cgroupsPath"] == "/skiff/" + "a" * 64
    dests = [m["destination"] for m in s["mounts"]]
    assert {"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm"} <= set(dests)
    s = spec(
        {"Tty": True},
        {
            "NetworkMode": "host",
            "Memory": 64 << 20,
            "NanoCpus": 500_000_000,
            "PidsLimit": 10,
            "ReadonlyRootfs": True,
            "ShmSize": 1 << 20,
            "SecurityOpt": ["no-new-privileges"],
            "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}],
        },
    )
    assert {"type": "network"} not in s["linux"]["namespaces"]
    r = s["linux"]["resources"]
    assert r["memory"]["limit"] == 64 << 20 and r["cpu"] == {"period": 100000, "quota": 50000}
    assert r["pids"] == {"limit": 10} and s["root"]["readonly"] and s["process"]["terminal"]
    assert s["process"]["noNewPrivileges"] is True
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    shm = next(m for m in s["mounts"] if m["destination"] == "/dev/shm")
    assert f"size={1 << 20}" in shm["options"]
    with pytest.raises(InvalidArgument):
        spec(host={"SecurityOpt": ["nonsense"]})
    with pytest.raises(InvalidArgument):
        spec(host={"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]})


def test_capabilities() -> None:
    assert "CAP_NET_ADMIN" in capabilities(False, ["NET_ADMIN"], None)
    assert "CAP_CHOWN" not in capabilities(False, None, ["chown"])
    assert capabilities(False, None, ["ALL"]) == []
    assert capabilities(False, ["SYS_ADMIN"], ["ALL"]) == ["CAP_SYS_ADMIN"]
    with pytest.raises(InvalidArgument):
        capabilities(False, ["NOT_A_CAP"], None)


def test_seccomp_profile_translation() -> None:
    out = seccomp_from_profile(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ERRNO",
                "archMap": [
                    {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}
                ],
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}],
            }
        )
    )
    assert out["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"]
    assert out["syscalls"] == [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    with pytest.raises(InvalidArgument):
        seccomp_from_profile("{")


def test_json_log_rotates_and_reads_back(tmp_path: Path) -> None:
    path = str(tmp_path / "c-json.log")
    log = JsonLog(path, {"max-size": "1k", "max-file": "2"})
    for i in range(100):
        log.write("stdout", f"line {i}\n".encode())
    log.write("stderr", b"no newline")
    log.close()
    assert Path(path).stat().st_size <= 1024 and Path(path + ".1").stat().st_size <= 1024
    assert not Path(path + ".2").exists()
    entries = read_entries(path, 2)
    assert entries[-1] == {**entries[-1], "log": "no newline", "stream": "stderr"}
    nums = [int(e["log"].split()[1]) for e in entries[:-1]]
    assert nums == list(range(nums[0], 100))


def test_times() -> None:
    assert rfc3339(1.5) == "1970-01-01T00:00:01.5Z"
    assert rfc3339(0) == "0001-01-01T00:00:00Z"
    assert parse_time("1970-01-01T00:00:01.25Z") == 1.25
    assert parse_time("1700000000.5") == 1700000000.5
    assert parse_time("1970-01-01T01:00:00+01:00") == 0.0


def test_frame_and_detach_keys() -> None:
    assert frame("stderr", b"ab") == struct.pack(">BxxxI", 2, 2) + b"ab"
    assert parse_detach_keys(None) == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x") == b"\x01x"
    with pytest.raises(InvalidArgument):
        parse_detach_keys("ctrl-long")


def test_clean_and_durations() -> None:
    assert clean("/../../etc//passwd") == ["etc", "passwd"]
    assert clean("a/./b/../c") == ["a", "c"]
    assert human_duration(0.2) == "Less than a second"
    assert human_duration(75) == "About a minute"
    assert human_duration(3 * 3600) == "3 hours"
