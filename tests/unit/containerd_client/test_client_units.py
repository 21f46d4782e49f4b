"""Units of skiff.containerd.client and skiff-ctr that need no daemon:
ctr-style spec generation, gRPC error mapping, table/size formatting, and
that the CLI starts without importing grpc."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import grpc
import pytest

from skiff import errors
from skiff.containerd.client import _grpc
from skiff.containerd.client.containers import RunOptions, generate_spec
from skiff.containerd.client.images import ResolvedImage
from skiff.containerd.ctr import _format, build_parser
from skiff.oci.digest import Digest
from skiff.oci.image import ContainerConfig, Descriptor, Image, RootFS

D = Digest("sha256:" + "a" * 64)


def _image(**config: object) -> ResolvedImage:
    cfg = Image(
        architecture="amd64",
        os="linux",
        config=ContainerConfig(**config),  # type: ignore[arg-type]
        rootfs=RootFS(diff_ids=(D,)),
    )
    desc = Descriptor(media_type="application/vnd.oci.image.manifest.v1+json", digest=D, size=1)
    return ResolvedImage(
        name="x", target=desc, manifest=desc, config_descriptor=desc, config=cfg, layers=[desc]
    )


def test_spec_takes_the_image_config() -> None:
    image = _image(
        env=("PATH=/bin", "A=1"), entrypoint=("/bin/sh", "-c"), cmd=("echo hi",),
        working_dir="/work", user="1000:100",
    )  # fmt: skip
    spec = generate_spec("c1", "ns1", image, RunOptions())
    p = spec["process"]
    assert p["args"] == ["/bin/sh", "-c", "echo hi"]
    assert p["env"] == ["PATH=/bin", "A=1"]
    assert p["cwd"] == "/work"
    assert p["user"] == {"uid": 1000, "gid": 100}
    assert p["terminal"] is False
    assert spec["linux"]["cgroupsPath"] == "/ns1/c1"
    assert "CAP_SYS_ADMIN" not in p["capabilities"]["bounding"]
    assert spec["root"] == {"path": "rootfs", "readonly": False}


def test_spec_command_line_wins() -> None:
    image = _image(env=("A=1",), cmd=("sh",))
    spec = generate_spec(
        "c1", "n", image,
        RunOptions(args=["true"], env=["A=2", "B=3"], terminal=True, cwd="/tmp", net_host=True),
    )  # fmt: skip
    p = spec["process"]
    assert p["args"] == ["true"]
    assert "A=2" in p["env"] and "B=3" in p["env"] and "A=1" not in p["env"]
    assert "TERM=xterm" in p["env"] and p["terminal"] is True
    assert p["cwd"] == "/tmp"
    assert {"type": "network"} not in spec["linux"]["namespaces"]


def test_spec_without_command_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument):
        generate_spec("c", "n", _image(), RunOptions())
    with pytest.raises(errors.InvalidArgument):
        generate_spec("c", "n", _image(cmd=("sh",)), RunOptions(user="nobody"))


class _Err(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgument),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.UNIMPLEMENTED, errors.NotImplemented_),
        (grpc.StatusCode.UNKNOWN, errors.SkiffError),
    ],
)
def test_grpc_errors_map_to_skiff_errors(code: grpc.StatusCode, cls: type) -> None:
    with pytest.raises(cls) as info, _grpc.mapped():
        raise _Err(code, 'container "x": not found')
    assert type(info.value) is cls
    assert info.value.grpc_code == code.value[0]
    assert str(info.value) == 'container "x": not found'


def test_go_tabwriter_layout() -> None:
    import io

    out = io.StringIO()
    _format.table(["TASK\tPID\tSTATUS\t", "s1\t30390\tRUNNING"], out=out)
    assert out.getvalue() == "TASK    PID      STATUS    \ns1      30390    RUNNING\n"
    out = io.StringIO()
    _format.tab_table(["DIGEST\tSIZE", "sha256:" + "a" * 64 + "\t405B"], out=out)
    assert out.getvalue().splitlines()[0] == "DIGEST" + "\t" * 9 + "SIZE"


def test_sizes_and_times() -> None:
    assert _format.binary_size(1037138) == "1012.8 KiB"
    assert _format.binary_size(405) == "405 B"
    assert _format.human_size(1036261) == "1.036MB"
    assert _format.human_size(472) == "472B"
    assert _format.human_duration(0.2) == "Less than a second"
    assert _format.human_duration(26) == "26 seconds"
    assert _format.human_duration(150) == "2 minutes"
    t = datetime(2026, 1, 2, 3, 4, 5, 123400, tzinfo=UTC)
    assert _format.go_time(t) == "2026-01-02 03:04:05.1234 +0000 UTC"


def test_parser_takes_ctr_flags() -> None:
    args = build_parser().parse_args(
        ["-n", "x", "run", "--rm", "-t", "--env", "A=1", "--runtime", "r", "img", "id", "sh", "-c", "true"]
    )  # fmt: skip
    assert (args.namespace, args.rm, args.tty, args.env, args.runtime) == (
        "x",
        True,
        True,
        ["A=1"],
        "r",
    )
    assert (args.image, args.id, args.command) == ("img", "id", ["sh", "-c", "true"])
    args = build_parser().parse_args(["tasks", "exec", "--exec-id", "e", "c", "ls", "-l"])
    assert (args.exec_id, args.id, args.command) == ("e", "c", ["ls", "-l"])


def test_help_does_not_import_grpc() -> None:
    code = (
        "import sys\n"
        "from skiff.containerd.ctr import build_parser\n"
        "build_parser()\n"
        "assert 'grpc' not in sys.modules, 'grpc imported at start-up'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unreachable_address_is_one_line(tmp_path: object) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "skiff.containerd.ctr", "-a", "/nonexistent/c.sock", "--timeout", "2", "version"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("skiff-ctr: "), r.stderr
