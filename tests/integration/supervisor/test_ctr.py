"""Debian's ctr (containerd 1.6) against skiff-containerd: the proof list of
issue 4, each command checked for what it prints."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from supervisor_daemon import DAEMON, IMAGE, IMAGE_OCI, IMAGE_TAR, Supervisor, require


def test_version_and_namespaces(supervisor: Supervisor) -> None:
    out = supervisor.ctr("version").stdout
    assert "Server:" in out and "skiff" in out and "UUID:" in out
    supervisor.ctr("namespaces", "create", "team-a", "owner=me")
    out = supervisor.ctr("namespaces", "ls").stdout
    assert "team-a" in out and "owner=me" in out
    supervisor.ctr("namespaces", "rm", "team-a")
    assert "team-a" not in supervisor.ctr("namespaces", "ls").stdout


def test_import_run_and_list(supervisor: Supervisor) -> None:
    supervisor.import_image()
    images = supervisor.ctr("images", "ls").stdout
    assert IMAGE in images and "linux/amd64" in images
    # runc's own shim, then ours
    run = supervisor.run_args()
    assert supervisor.ctr(*run, "--rm", IMAGE, "c1", "true").returncode == 0
    p = supervisor.ctr(*run, "--rm", IMAGE, "c2", "sh", "-c", "echo out; exit 3", check=False)
    assert (p.returncode, p.stdout.strip()) == (3, "out")
    p = supervisor.ctr(
        *supervisor.run_args("io.containerd.skiff.v1"),
        "--rm",
        IMAGE,
        "c3",
        "echo",
        "from-skiff-shim",
    )
    assert p.stdout.strip() == "from-skiff-shim"
    # a detached one shows up everywhere
    supervisor.ctr(*run, "-d", IMAGE, "d1", "sleep", "300")
    tasks = supervisor.tasks()
    assert tasks["d1"][1] == "RUNNING" and set(tasks) == {"d1"}
    containers = supervisor.ctr("containers", "ls").stdout
    assert "d1" in containers and "io.containerd.runc.v2" in containers
    assert "c1" not in containers  # --rm removed it
    snaps = supervisor.ctr("snapshots", "ls").stdout
    assert "d1" in snaps and "Active" in snaps and "Committed" in snaps
    content = supervisor.ctr("content", "ls").stdout
    assert content.count("sha256:") >= 3 and "containerd.io/gc.ref.content" in content
    # exec and ps go through the shim too
    p = supervisor.ctr(
        "tasks",
        "exec",
        "--fifo-dir",
        str(supervisor.fifo),
        "--exec-id",
        "e1",
        "d1",
        "echo",
        "exec-ok",
    )
    assert p.stdout.strip() == "exec-ok"
    assert str(tasks["d1"][0]) in supervisor.ctr("tasks", "ps", "d1").stdout
    supervisor.ctr("tasks", "kill", "-s", "KILL", "d1")
    deadline = time.monotonic() + 10
    while supervisor.tasks()["d1"][1] != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    supervisor.ctr("tasks", "rm", "d1")
    supervisor.ctr("containers", "rm", "d1")
    assert "d1" not in supervisor.ctr("snapshots", "ls").stdout


def test_image_rm_collects_blobs_and_snapshots(supervisor: Supervisor) -> None:
    supervisor.import_image()
    # the same image in a second namespace is stored once
    supervisor.ctr("images", "import", str(IMAGE_TAR), namespace="other")
    blobs = supervisor.root / "io.containerd.content.v1.content" / "blobs" / "sha256"
    before = sorted(os.listdir(blobs))
    assert len(before) == 3
    supervisor.ctr("images", "rm", IMAGE)
    assert sorted(os.listdir(blobs)) == before  # still used by "other"
    assert supervisor.ctr("content", "ls", "-q").stdout.split() == []
    assert supervisor.ctr("snapshots", "ls").stdout.count("\n") == 1  # the header only
    supervisor.ctr("images", "rm", IMAGE, namespace="other")
    assert os.listdir(blobs) == []
    assert supervisor.ctr("snapshots", "ls", namespace="other").stdout.count("\n") == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pull_from_local_registry(supervisor: Supervisor) -> None:
    for tool in ("docker-registry", "skopeo"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    port = _free_port()
    storage = tempfile.mkdtemp(prefix="skreg")
    config = Path(storage) / "config.yml"
    config.write_text(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: " + storage + "/data\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    reg = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.05)
        ref = f"127.0.0.1:{port}/library/busybox:latest"
        subprocess.run(
            [
                "skopeo",
                "copy",
                "--dest-tls-verify=false",
                f"oci:{IMAGE_OCI}:latest",
                f"docker://{ref}",
            ],
            check=True,
            capture_output=True,
        )
        out = supervisor.ctr("images", "pull", "--plain-http", ref).stdout
        assert "done" in out
        assert ref in supervisor.ctr("images", "ls").stdout
        p = supervisor.ctr(*supervisor.run_args(), "--rm", ref, "p1", "echo", "pulled")
        assert p.stdout.strip() == "pulled"
    finally:
        reg.kill()
        reg.wait()
        shutil.rmtree(storage, ignore_errors=True)


def test_events(supervisor: Supervisor) -> None:
    supervisor.import_image()
    events = subprocess.Popen(
        ["ctr", "-a", supervisor.address, "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        supervisor.ctr(*supervisor.run_args("io.containerd.skiff.v1"), "--rm", IMAGE, "ev1", "true")
        # the shims' fallback path: `<publish-binary> --address A publish` with an Any on stdin
        from google.protobuf import any_pb2

        from skiff.api.gen.containerd.events import task_pb2

        oom = any_pb2.Any(
            type_url="containerd.events.TaskOOM",
            value=task_pb2.TaskOOM(container_id="oom1").SerializeToString(),
        )
        subprocess.run(
            [
                str(DAEMON),
                "--address",
                supervisor.address,
                "publish",
                "--topic",
                "/tasks/oom",
                "--namespace",
                "default",
            ],
            input=oom.SerializeToString(),
            check=True,
            capture_output=True,
        )
        time.sleep(0.5)
    finally:
        events.terminate()
        out, _ = events.communicate(timeout=10)
    for topic in (
        "/containers/create",
        "/snapshot/prepare",
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
        "/containers/delete",
    ):
        assert topic in out, out
    assert "ev1" in out and '/tasks/oom {"container_id":"oom1"}' in out


def test_config_default_and_dump(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(DAEMON), "config", "default"], capture_output=True, text=True, check=True
    ).stdout
    assert 'address = "/run/skiff/containerd/containerd.sock"' in out
    cfg = tmp_path / "c.toml"
    cfg.write_text('[debug]\nlevel = "debug"\n[grpc]\nmax_workers = 7\n')
    out = subprocess.run(
        [str(DAEMON), "--config", str(cfg), "-a", str(tmp_path / "x.sock"), "config", "dump"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert 'level = "debug"' in out and "max_workers = 7" in out
    assert f'address = "{tmp_path}/x.sock.ttrpc"' in out
    assert json.dumps(str(tmp_path / "x.sock")) in out


@pytest.mark.parametrize("server", ["grpcio", "h2"])
def test_both_grpc_servers(server: str) -> None:
    """`[grpc] server` picks grpcio or our own server over h2; whichever is
    not the default must keep serving ctr: a stream in (import), streams out
    (content get, events), unary calls, a task run."""
    require()
    tmp = Path(tempfile.mkdtemp(prefix="skc", dir="/tmp"))
    sup = Supervisor(tmp, grpc_server=server)
    events = None
    try:
        sup.start()
        assert "skiff" in sup.ctr("version").stdout
        events = subprocess.Popen(
            ["ctr", "-a", sup.address, "events"], stdout=subprocess.PIPE, text=True
        )
        sup.import_image()
        digest = sup.ctr("content", "ls", "-q").stdout.split()[0]
        blob = subprocess.run(
            ["ctr", "-a", sup.address, "content", "get", digest], capture_output=True, check=True
        ).stdout
        assert "sha256:" + hashlib.sha256(blob).hexdigest() == digest
        p = sup.ctr(
            *sup.run_args(), "--rm", IMAGE, "g1", "sh", "-c", "echo hi; exit 4", check=False
        )
        assert (p.returncode, p.stdout.strip()) == (4, "hi")
        time.sleep(0.5)
        events.terminate()
        seen = events.communicate(timeout=10)[0]
        # image events decode too: their type URLs are containerd.services.images.v1.*
        assert "/tasks/exit" in seen and "/images/create" in seen
    finally:
        if events is not None and events.poll() is None:
            events.kill()
            events.wait()
        sup.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def test_skiff_ctr_against_skiff_containerd(supervisor: Supervisor) -> None:
    """Our client on our server: the Write stream (import), Read (content
    get), Subscribe (events), unary calls and tasks, through skiff-ctr."""

    def skiff_ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(DAEMON.parent / "skiff-ctr"), "-a", supervisor.address, *args]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    events = subprocess.Popen(
        [str(DAEMON.parent / "skiff-ctr"), "-a", supervisor.address, "events"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        skiff_ctr("images", "import", str(IMAGE_TAR))
        assert skiff_ctr("images", "ls", "-q").stdout.split() == [IMAGE]
        digests = skiff_ctr("content", "ls", "-q").stdout.split()
        assert len(digests) == 3
        for digest in digests:
            blob = subprocess.run(
                [
                    str(DAEMON.parent / "skiff-ctr"),
                    "-a",
                    supervisor.address,
                    "content",
                    "get",
                    digest,
                ],
                capture_output=True,
                check=True,
            ).stdout
            assert "sha256:" + hashlib.sha256(blob).hexdigest() == digest
        fifo = ["--fifo-dir", str(supervisor.fifo)]
        for runtime in ("io.containerd.runc.v2", "io.containerd.skiff.v1"):
            p = skiff_ctr(
                "run", "--rm", *fifo, "--runtime", runtime, IMAGE, "sc1",
                "sh", "-c", "echo out; exit 6", check=False,
            )  # fmt: skip
            assert (p.returncode, p.stdout) == (6, "out\n"), p.stderr
        # a spec of 160 kB: run's lean client waits on the server's flow-control window
        env_file = supervisor.fifo.parent / "big.env"
        env_file.write_text("".join(f"V{i}={'x' * 40}{i}\n" for i in range(3000)))
        p = skiff_ctr("run", "--rm", *fifo, "--env-file", str(env_file), IMAGE, "sc3",
                      "sh", "-c", "echo $V2999")  # fmt: skip
        assert p.stdout == "x" * 40 + "2999\n"
        skiff_ctr("run", "-d", *fifo, IMAGE, "sc2", "sleep", "300")
        assert "RUNNING" in skiff_ctr("tasks", "ls").stdout
        p = skiff_ctr(
            "tasks", "exec", *fifo, "--exec-id", "e1", "sc2", "sh", "-c", "exit 2", check=False
        )
        assert p.returncode == 2, p.stderr
        skiff_ctr("tasks", "kill", "-s", "SIGKILL", "sc2")
        deadline = time.monotonic() + 10
        while "STOPPED" not in skiff_ctr("tasks", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        skiff_ctr("tasks", "rm", "sc2")
        skiff_ctr("containers", "rm", "sc2")
        time.sleep(0.5)
    finally:
        events.terminate()
        seen = events.communicate(timeout=10)[0]
    for topic in ("/images/create", "/tasks/exit", "/tasks/exec-started", "/containers/delete"):
        assert topic in seen, (topic, seen)
