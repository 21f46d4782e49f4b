"""skiff-shim pieces without containerd: flags, options, the start/delete bootstrap."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.shim.main import parse_args, socket_path
from skiff.shim.reaper import exit_status
from skiff.shim.service import read_runtime_options
from skiff.shim.syscalls import parse_mount_options
from skiff.ttrpc import task as api
from skiff.ttrpc.client import Client
from skiff.ttrpc.protobuf import Any_

SHIM = str(Path(sys.executable).parent / "containerd-shim-skiff-v1")


def test_parse_go_style_flags() -> None:
    args = parse_args(
        [
            "-namespace",
            "ns",
            "--id=c1",
            "-address",
            "/a/c.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-debug",
            "start",
        ]
    )
    assert (args.namespace, args.id, args.address, args.action) == (
        "ns",
        "c1",
        "/a/c.sock",
        "start",
    )
    assert args.debug and args.publish_binary == "/usr/bin/containerd"
    with pytest.raises(SystemExit):
        parse_args(["-bogus", "x"])


def test_socket_path_is_stable_and_short() -> None:
    p1 = socket_path("/run/x/containerd.sock", "default", "c1")
    assert p1 == socket_path("/run/x/containerd.sock", "default", "c1")
    assert p1 != socket_path("/run/x/containerd.sock", "other", "c1")
    assert p1.startswith("/run/x/s/") and len(p1) < 108
    long = socket_path("/" + "d" * 80 + "/c.sock", "default", "c1")
    assert long.startswith("/run/skiff/s/")


def test_runtime_options() -> None:
    assert read_runtime_options(None) == ("", "")
    runc = Any_.pack(api.RuncOptions(binary_name="crun", root="/r"))
    assert read_runtime_options(runc) == ("crun", "/r")
    body = api.RuntimeOptions(config_body=b'BinaryName = "runc"\nRoot = "/x"\n')
    assert read_runtime_options(Any_.pack(body)) == ("runc", "/x")
    with pytest.raises(InvalidArgument):
        read_runtime_options(Any_(type_url="some.Other", value=b""))
    with pytest.raises(InvalidArgument):
        read_runtime_options(Any_.pack(api.RuntimeOptions(config_body=b"= nonsense")))


def test_mount_options_split_flags_from_data() -> None:
    flags, data = parse_mount_options(["ro", "nosuid", "lowerdir=/a:/b", "upperdir=/u"])
    assert flags == 1 | 2
    assert data == "lowerdir=/a:/b,upperdir=/u"
    flags, _ = parse_mount_options(["rbind", "rw"])
    assert flags == 4096 | 16384


def test_exit_status_of_signals() -> None:
    assert exit_status(3 << 8) == 3
    assert exit_status(9) == 137  # killed by SIGKILL


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temp dir short enough for the shim's socket path (sun_path is 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def bundle(short_tmp: Path) -> Path:
    if not os.path.exists(SHIM):
        pytest.skip("containerd-shim-skiff-v1 is not installed in the venv (pip install -e .)")
    b = short_tmp / "bundle"
    b.mkdir()
    return b


def test_start_serves_ttrpc_and_shutdown_ends_it(bundle: Path, short_tmp: Path) -> None:
    tmp_path = short_tmp
    address = str(tmp_path / "containerd.sock")
    argv = [SHIM, "-namespace", "ns", "-id", "c1", "-address", address, "start"]
    started = time.monotonic()
    out = subprocess.run(argv, cwd=bundle, capture_output=True, timeout=20, input=b"")
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    shim_address = out.stdout.decode()
    assert shim_address.startswith("unix://" + str(tmp_path / "s") + "/")
    assert out.stderr == b""  # containerd 1.6 reads stdout and stderr together
    assert (bundle / "address").read_text() == shim_address
    print(f"shim start took {elapsed * 1000:.0f} ms")

    client = Client(shim_address)
    connect = api.ConnectResponse()
    try:
        connect = api.ConnectResponse.decode(
            client.call(api.SERVICE, "Connect", api.ConnectRequest(id="c1").encode())
        )
        assert connect.shim_pid > 0 and connect.task_pid == 0
        assert os.path.exists(f"/proc/{connect.shim_pid}")
        # the daemon is detached: a session of its own (and, forked twice, not its leader)
        assert os.getsid(connect.shim_pid) not in (os.getsid(0), connect.shim_pid)
        with pytest.raises(Exception, match="not found"):
            client.call(api.SERVICE, "State", api.StateRequest(id="c1").encode())
        # a second start finds the live shim and prints the same address
        again = subprocess.run(argv, cwd=bundle, capture_output=True, timeout=20, input=b"")
        assert again.stdout.decode() == shim_address
        client.call(api.SERVICE, "Shutdown", api.ShutdownRequest(id="c1").encode())
    finally:
        client.close()
        if connect.shim_pid and os.path.exists(f"/proc/{connect.shim_pid}"):
            time.sleep(0.5)
            if os.path.exists(f"/proc/{connect.shim_pid}/exe"):
                os.kill(connect.shim_pid, 9)  # the shim we started did not shut down
    path = shim_address[len("unix://") :]
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{connect.shim_pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(path)
    status = Path(f"/proc/{connect.shim_pid}/status")
    assert not status.exists() or "zombie" in status.read_text()


def test_delete_after_dead_shim_prints_delete_response(bundle: Path, tmp_path: Path) -> None:
    (bundle / "init.exit").write_text("3 1700000000 5\n")
    (bundle / "init.pid").write_text("4242\n")
    out = subprocess.run(
        [
            SHIM,
            "-namespace",
            "ns",
            "-id",
            "c1",
            "-address",
            str(tmp_path / "c.sock"),
            "-bundle",
            str(bundle),
            "delete",
        ],
        cwd=bundle,
        capture_output=True,
        timeout=20,
    )
    assert out.returncode == 0, out.stderr
    response = api.DeleteResponse.decode(out.stdout)
    assert response.pid == 4242 and response.exit_status == 3
    assert response.exited_at is not None and response.exited_at.seconds == 1700000000


def _cmdline(pid: int) -> list[bytes]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]


def _templates(address: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = _cmdline(int(entry))
            except OSError:
                continue
            if argv[:1] and argv[0].endswith(b"skiff-shim-template") and address.encode() in argv:
                pids.append(int(entry))
    return pids


def _rollup(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        values[key] = int(value.split()[0])
    return values


def _start(address: str, bundle: Path, container_id: str) -> tuple[str, int]:
    bundle.mkdir(exist_ok=True)
    argv = [SHIM, "-namespace", "ns", "-id", container_id, "-address", address, "start"]
    out = subprocess.run(argv, cwd=bundle, capture_output=True, timeout=20, input=b"")
    assert out.returncode == 0, out.stderr
    assert out.stderr == b""
    shim_address = out.stdout.decode()
    client = Client(shim_address)
    try:
        reply = client.call(api.SERVICE, "Connect", api.ConnectRequest(id=container_id).encode())
    finally:
        client.close()
    return shim_address, api.ConnectResponse.decode(reply).shim_pid


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_shims_fork_from_one_template(bundle: Path, short_tmp: Path) -> None:
    address = str(short_tmp / "c.sock")
    shims: list[int] = []
    try:
        for i in range(3):
            _, pid = _start(address, short_tmp / f"b{i}", f"c{i}")
            shims.append(pid)
        (template,) = _templates(address)
        assert template not in shims
        # each shim shows its own arguments, not those of the process it forked from
        assert _cmdline(shims[1])[1:] == [
            b"-namespace",
            b"ns",
            b"-id",
            b"c1",
            b"-address",
            address.encode(),
        ]
        assert _cmdline(shims[1])[0].endswith(b"containerd-shim-skiff-v1")
        # the template holds no descriptor of the start that made it (containerd waits
        # for EOF): its socket and a pidfd per shim; a shim holds neither of those
        fds = [
            os.readlink(f"/proc/{template}/fd/{fd}") for fd in os.listdir(f"/proc/{template}/fd")
        ]
        (sock,) = [f for f in fds if f.startswith("socket:")]
        assert sorted(fds) == [*["/dev/null"] * 3, *["anon_inode:[pidfd]"] * 3, sock]
        for pid in shims:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                assert os.readlink(f"/proc/{pid}/fd/{fd}") not in (sock, "anon_inode:[pidfd]")
        # forked from the template, the shims share the interpreter's pages with it
        for pid in shims:
            assert _rollup(pid)["Shared_Dirty"] > 1024, _rollup(pid)
        mode = os.stat(next(short_tmp.glob("s/template-*"))).st_mode
        assert mode & 0o777 == 0o600
    finally:
        _kill_all(shims + _templates(address))


def test_a_dead_template_is_replaced(bundle: Path, short_tmp: Path) -> None:
    address = str(short_tmp / "c.sock")
    shims: list[int] = []
    try:
        shims.append(_start(address, short_tmp / "b0", "c0")[1])
        (first,) = _templates(address)
        os.kill(first, 9)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{first}/exe") and time.monotonic() < deadline:
            time.sleep(0.02)
        shims.append(_start(address, short_tmp / "b1", "c1")[1])
        (second,) = _templates(address)
        assert second != first
        # the shim of the dead template still serves
        client = Client(socket_path(address, "ns", "c0"))
        try:
            client.call(api.SERVICE, "Connect", api.ConnectRequest(id="c0").encode())
        finally:
            client.close()
    finally:
        _kill_all(shims + _templates(address))


def test_a_template_of_other_code_steps_aside(bundle: Path, short_tmp: Path) -> None:
    from skiff.shim.template import TemplateGone, request_shim, template_path

    address = str(short_tmp / "c.sock")
    shims: list[int] = []
    try:
        shims.append(_start(address, short_tmp / "b0", "c0")[1])
        (template,) = _templates(address)
        path = template_path(socket_path(address, "ns", "c9"), address)
        with pytest.raises(TemplateGone, match="stale"):
            request_shim(path, b"another-checkout", ["x"], str(bundle), 0)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{template}/exe") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not os.path.exists(f"/proc/{template}/exe")
        assert not os.path.exists(path)
        shims.append(_start(address, short_tmp / "b1", "c1")[1])
        assert len(_templates(address)) == 1
    finally:
        _kill_all(shims + _templates(address))


def test_template_leaves_with_its_last_shim_when_no_supervisor_listens(
    bundle: Path, short_tmp: Path
) -> None:
    address = str(short_tmp / "c.sock")  # nothing listens here
    shim_address, pid = _start(address, short_tmp / "b0", "c0")
    (template,) = _templates(address)
    try:
        client = Client(shim_address)
        try:
            client.call(api.SERVICE, "Shutdown", api.ShutdownRequest(id="c0").encode())
        finally:
            client.close()
        deadline = time.monotonic() + 15
        while os.path.exists(f"/proc/{template}/exe") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{template}/exe")
        assert not list(short_tmp.glob("s/template-*"))
    finally:
        _kill_all([pid, *_templates(address)])


def test_supervisor_starts_our_shim_from_the_template_without_the_bootstrap(
    bundle: Path, short_tmp: Path
) -> None:
    """skiff-containerd's path (skiff.ttrpc.shimstart): the template forks the shim directly."""
    from skiff.ttrpc import shimstart

    address = str(short_tmp / "c.sock")
    shims: list[int] = []
    try:
        # no template yet: nothing is started, the caller must execute the binary
        with pytest.raises(shimstart.TemplateGone):
            shimstart.start_from_template(
                SHIM, ["-namespace", "ns", "-id", "c9", "-address", address], str(bundle),
                address=address, namespace="ns", container_id="c9",
                stamp=shimstart.code_stamp(),
            )  # fmt: skip
        assert not os.path.exists(shimstart.socket_path(address, "ns", "c9"))
        shims.append(_start(address, short_tmp / "b0", "c0")[1])  # executes it: the template
        interpreter = shimstart.own_shim_interpreter(SHIM)
        assert interpreter, f"{SHIM} is not this checkout's lean launcher"
        assert shimstart.own_shim_interpreter("/usr/bin/containerd-shim-runc-v2") == ""
        b1 = short_tmp / "b1"
        b1.mkdir()
        shim_address = shimstart.start_from_template(
            SHIM, ["-namespace", "ns", "-id", "c1", "-address", address], str(b1),
            address=address, namespace="ns", container_id="c1",
            env={b"PATH": os.environb.get(b"PATH", b"/usr/bin:/bin")},
            stamp=shimstart.code_stamp(interpreter),
        )  # fmt: skip
        assert (b1 / "address").read_text() == shim_address
        client = Client(shim_address)
        try:
            reply = client.call(api.SERVICE, "Connect", api.ConnectRequest(id="c1").encode())
        finally:
            client.close()
        pid = api.ConnectResponse.decode(reply).shim_pid
        shims.append(pid)
        assert _cmdline(pid)[1:5] == [b"-namespace", b"ns", b"-id", b"c1"]
        assert os.readlink(f"/proc/{pid}/cwd") == str(b1)
        # asked again for a running shim: its address, no second shim
        again = shimstart.start_from_template(
            SHIM, ["-namespace", "ns", "-id", "c1", "-address", address], str(b1),
            address=address, namespace="ns", container_id="c1",
            stamp=shimstart.code_stamp(interpreter),
        )  # fmt: skip
        assert again == shim_address
    finally:
        _kill_all(shims + _templates(address))
