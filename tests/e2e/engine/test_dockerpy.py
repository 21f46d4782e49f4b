"""docker-py's high-level API drives skiffd: the same scenarios as the CLI tests."""

from __future__ import annotations

import io
import tarfile
import time
import uuid
from collections.abc import Iterator

import pytest
from engine_daemons import Engine

docker = pytest.importorskip("docker", reason="docker-py (PyPI docker) is not installed")


@pytest.fixture
def client(engine: Engine) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=f"unix://{engine.sock}", timeout=60)
    try:
        yield c
    finally:
        c.close()


def name() -> str:
    return "p" + uuid.uuid4().hex[:10]


def test_run_foreground_and_remove(client: docker.DockerClient) -> None:
    out = client.containers.run(
        "busybox", ["sh", "-c", "echo hi; echo err >&2"], remove=True, stderr=True
    )
    assert b"hi" in out
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run("busybox", ["sh", "-c", "exit 5"], remove=True)
    assert info.value.exit_status == 5


def test_detached_lifecycle_exec_logs_stats(client: docker.DockerClient) -> None:
    c = client.containers.run(
        "busybox",
        ["sh", "-c", "trap 'exit 0' TERM; while true; do echo t; sleep 0.1; done"],
        detach=True,
        name=name(),
        labels={"suite": "py"},
    )
    try:
        c.reload()
        assert c.status == "running" and c.labels["suite"] == "py"
        code, output = c.exec_run(["sh", "-c", "echo $((2+3))"])
        assert code == 0 and output == b"5\n"
        code, _ = c.exec_run(["false"])
        assert code == 1
        time.sleep(0.3)
        assert c.logs().startswith(b"t\n")
        stream = c.logs(stream=True, follow=True, tail=1)
        assert next(stream).strip() == b"t"
        stream.close()
        st = c.stats(stream=False)
        assert st["memory_stats"]["usage"] > 0 and st["pids_stats"]["current"] >= 1
        top = c.top()
        assert "PID" in top["Titles"]
        c.pause()
        c.reload()
        assert c.status == "paused"
        c.unpause()
        c.stop(timeout=5)
        assert c.wait(timeout=10)["StatusCode"] == 0
        c.reload()
        assert c.status == "exited"
        assert [x.id for x in client.containers.list(all=True, filters={"label": "suite=py"})] == [
            c.id
        ]
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_put_and_get_archive(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sleep", "60"], detach=True)
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            data = b"payload\n"
            info = tarfile.TarInfo("f.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        assert c.put_archive("/tmp", buf.getvalue())
        chunks, stat = c.get_archive("/tmp/f.txt")
        assert stat["name"] == "f.txt" and stat["size"] == 8
        got = io.BytesIO(b"".join(chunks))
        with tarfile.open(fileobj=got) as tar:
            member = tar.extractfile("f.txt")
            assert member is not None and member.read() == b"payload\n"
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/no/such/path")
    finally:
        c.remove(force=True)


def test_attach_socket_and_stdin(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["sh", "-c", "read x; echo got-$x"], stdin_open=True)
    try:
        sock = c.attach_socket(params={"stdin": 1, "stdout": 1, "stream": 1})
        c.start()
        sock._sock.sendall(b"abc\n")
        data = b""
        deadline = time.monotonic() + 10
        while b"got-abc" not in data and time.monotonic() < deadline:
            chunk = sock._sock.recv(4096)
            if not chunk:
                break
            data += chunk
        sock.close()
        assert b"got-abc" in data
        assert data[:1] == b"\x01"  # multiplexed: stdout frame
        assert c.wait(timeout=10)["StatusCode"] == 0
    finally:
        c.remove(force=True)


def test_volumes_and_networks(client: docker.DockerClient) -> None:
    v = client.volumes.create(name(), labels={"a": "b"})
    try:
        assert v.attrs["Driver"] == "local" and v.attrs["Labels"] == {"a": "b"}
        out = client.containers.run(
            "busybox",
            ["sh", "-c", "echo x > /v/f; cat /v/f"],
            volumes={v.name: {"bind": "/v", "mode": "rw"}},
            remove=True,
        )
        assert out == b"x\n"
        assert v.name in [x.name for x in client.volumes.list(filters={"label": "a=b"})]
    finally:
        v.remove(force=True)
    nets = {n.name for n in client.networks.list()}
    assert {"host", "none"} <= nets  # skiffd runs with --bridge=none here: no default bridge


def test_restart_policy_and_errors(client: docker.DockerClient) -> None:
    c = client.containers.run(
        "busybox",
        ["sh", "-c", "exit 2"],
        detach=True,
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 1},
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            c.reload()
            if c.attrs["RestartCount"] == 1 and c.status == "exited":
                break
            time.sleep(0.2)
        assert c.attrs["RestartCount"] == 1 and c.attrs["State"]["ExitCode"] == 2
    finally:
        c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get("no-such-container-here")
    with pytest.raises(docker.errors.ImageNotFound):
        client.containers.create("no-such-image-here:1", ["true"])


def test_tty_container_starts_with_its_console_size(client: docker.DockerClient) -> None:
    # HostConfig.ConsoleSize (API 1.42+; `docker run -it` sends it) is the terminal's size
    # from the first instruction: no client attaches here, so no resize ever comes
    n = name()
    api = client.api
    body = {
        "Image": "busybox",
        "Cmd": ["stty", "size"],
        "Tty": True,
        "HostConfig": {"ConsoleSize": [30, 100]},
    }
    res = api._post_json(api._url("/containers/create"), data=body, params={"name": n})
    cid = api._result(res, json=True)["Id"]
    try:
        api.start(cid)
        assert api.wait(cid, timeout=30)["StatusCode"] == 0
        assert api.logs(cid).replace(b"\r", b"") == b"30 100\n"
    finally:
        api.remove_container(cid, force=True)
