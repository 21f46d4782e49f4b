"""Unit tests of skiff.runtime pieces that need no container: flags, config checks,
path resolution, JSON, signals and sizes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument, NotFound
from skiff.oci import fastjson
from skiff.oci.runtime_spec import default_spec
from skiff.runtime import caps, cli, config, rootfs
from skiff.runtime.container import parse_signal


def test_go_style_flags() -> None:
    table = cli.FLAGS["exec"]
    values, rest = cli.parse_flags(
        ["-t", "--env=A=1", "-e", "B=2", "--cwd", "/x", "-pid-file=/p", "id", "sh", "-c", "x"],
        table,
    )
    assert values == {"tty": True, "env": ["A=1", "B=2"], "cwd": "/x", "pid-file": "/p"}
    assert rest == ["id", "sh", "-c", "x"]


def test_bool_flag_false_and_terminator() -> None:
    values, rest = cli.parse_flags(["--detach=false", "--", "-id"], cli.FLAGS["run"])
    assert values == {"detach": False}
    assert rest == ["-id"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nope"], "flag provided but not defined: -nope"),
        (["--bundle"], "flag needs an argument"),
    ],
)
def test_bad_flags(args: list[str], message: str) -> None:
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_flags(args, cli.FLAGS["create"])


def test_sizes_and_signals() -> None:
    assert cli.parse_size("100m") == 100 << 20
    assert cli.parse_size("1G") == 1 << 30
    assert cli.parse_size("4096") == 4096
    assert cli.parse_size("-1") == -1
    with pytest.raises(cli.UsageError):
        cli.parse_size("lots")
    assert parse_signal("KILL") == 9
    assert parse_signal("SIGTERM") == 15
    assert parse_signal("9") == 9
    import signal

    assert parse_signal("RTMIN+2") == signal.SIGRTMIN + 2
    with pytest.raises(InvalidArgument):
        parse_signal("SIGNOPE")


def _bundle(tmp_path: Path, mutate: object = None) -> Path:
    (tmp_path / "rootfs").mkdir()
    spec = default_spec()
    if callable(mutate):
        mutate(spec)
    (tmp_path / "config.json").write_text(json.dumps(spec))
    return tmp_path


def test_default_spec_is_valid(tmp_path: Path) -> None:
    _, spec = config.load_bundle(str(_bundle(tmp_path)))
    assert spec["process"]["args"] == ["sh"]
    assert spec["linux"]["maskedPaths"][0] == "/proc/acpi"


@pytest.mark.parametrize(
    "mutate, error, message",
    [
        (
            lambda s: s["linux"]["namespaces"].append({"type": "bogus"}),
            InvalidArgument,
            "unknown namespace type 'bogus'",
        ),
        (
            lambda s: s["process"]["capabilities"]["bounding"].append("CAP_BOGUS"),
            InvalidArgument,
            "unknown capability 'CAP_BOGUS'",
        ),
        (lambda s: s["process"].update(args=[]), InvalidArgument, "process.args must not be empty"),
        (lambda s: s["root"].update(path="nothere"), NotFound, "rootfs .* does not exist"),
        (lambda s: s["process"].update(cwd="relative"), InvalidArgument, "is not absolute"),
        (
            lambda s: s["linux"].update(sysctl={"kernel.panic": "1"}),
            InvalidArgument,
            "not in a separate kernel namespace",
        ),
        (
            lambda s: s["linux"].update(cgroupsPath="system.slice:skiff:x"),
            InvalidArgument,
            "systemd cgroups are not supported",
        ),
        (lambda s: s.pop("process"), InvalidArgument, "process must be set"),
        (
            lambda s: s["process"].update(rlimits=[{"type": "RLIMIT_X", "hard": 1, "soft": 1}]),
            InvalidArgument,
            "unknown rlimit type",
        ),
    ],
)
def test_invalid_configs(tmp_path: Path, mutate: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        config.load_bundle(str(_bundle(tmp_path, mutate)))


def test_malformed_json_and_missing_bundle(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        config.load_bundle(str(tmp_path))
    with pytest.raises(NotFound, match="does not exist"):
        config.load_bundle(str(tmp_path / "missing"))


def test_secure_join_keeps_symlinks_inside_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../etc", root / "rel")
    os.symlink("loop", root / "loop")
    r = str(root)
    assert rootfs.secure_join(r, "/abs/passwd") == f"{r}/etc/passwd"
    assert rootfs.secure_join(r, "/rel/passwd") == f"{r}/etc/passwd"
    assert rootfs.secure_join(r, "/../../x") == f"{r}/x"
    assert rootfs.secure_join(r, "/") == r
    with pytest.raises(OSError, match="too many symlinks"):
        rootfs.secure_join(r, "/loop/x")


def test_mount_options() -> None:
    flags, propagation, data = rootfs.parse_options(
        ["nosuid", "ro", "rw", "rbind", "rslave", "mode=755", "size=1m", "tmpcopyup"]
    )
    from skiff.runtime import linux

    assert flags == linux.MS_NOSUID | linux.MS_BIND | linux.MS_REC
    assert propagation == linux.MS_SLAVE | linux.MS_REC
    assert data == "mode=755,size=1m"


def test_fastjson_round_trip_and_errors() -> None:
    doc = {"a": [1, 2.5, None, True, "é\n"], "b": {}}
    assert fastjson.loads(fastjson.dumps(doc)) == doc
    assert json.loads(fastjson.dumps_indent(doc, "\t")) == doc
    for bad in ("{bad", "[1] x", ""):
        with pytest.raises(fastjson.DecodeError):
            fastjson.loads(bad)


def test_capability_masks() -> None:
    assert caps.mask(["CAP_CHOWN", "CAP_KILL"]) == (1 << 0) | (1 << 5)
    assert caps.number("net_admin") == 12
    with pytest.raises(InvalidArgument):
        caps.number("CAP_NOPE")
