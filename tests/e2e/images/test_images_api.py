"""docker-py (PyPI `docker`) drives skiffd's image API: the high-level images
API, raw pull progress lines in dockerd's shape, X-Registry-Auth against a
registry with htpasswd, and Docker's status codes and messages for errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import docker
import docker.errors
import pytest
from images_daemons import Stack, run_registry, start_stack

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def client(stack: Stack) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{stack.skiffd_sock}", timeout=60)


def test_docker_py_images(stack: Stack, busybox_tar: Path, busybox_id: str) -> None:
    c = client(stack)
    loaded = c.images.load(busybox_tar.read_bytes())
    assert [i.id for i in loaded] == [busybox_id]
    image = c.images.get("busybox")
    assert image.tags == ["busybox:latest"]
    assert image.attrs["RootFS"]["Type"] == "layers"
    assert image.tag("example/bb", "two")
    assert sorted(c.images.get(busybox_id).tags) == ["busybox:latest", "example/bb:two"]
    assert [i.id for i in c.images.list()] == [busybox_id]
    assert [i.id for i in c.images.list(name="example/bb")] == [busybox_id]
    assert c.images.list(filters={"dangling": True}) == []
    history = image.history()
    assert history[0]["Id"] == busybox_id and history[-1]["Id"] == "<missing>"
    archive = b"".join(image.save(named=True))
    c.images.remove("example/bb:two")
    c.images.remove(busybox_id, force=True)
    assert c.images.list() == []
    again = c.images.load(archive)
    assert [i.id for i in again] == [busybox_id]
    with pytest.raises(docker.errors.ImageNotFound) as missing:
        c.images.get("nosuch:tag")
    assert "No such image: nosuch:tag" in str(missing.value)
    result = c.images.prune(filters={"dangling": False})
    assert any(d.get("Deleted") == busybox_id for d in result["ImagesDeleted"])
    assert c.df()["Images"] == []


def test_raw_pull_progress_and_auth(stack: Stack, busybox_tar: Path, busybox_id: str) -> None:
    c = client(stack)
    c.images.load(busybox_tar.read_bytes())
    with run_registry(auth=True) as reg:
        name = f"{reg.host}/private/busybox"
        c.images.get("busybox").tag(name, "v1")
        # without credentials the registry refuses the push
        lines = list(c.api.push(name, tag="v1", stream=True, decode=True))
        assert "error" in lines[-1], lines
        auth = {"username": reg.user, "password": reg.password}
        lines = list(c.api.push(name, tag="v1", stream=True, decode=True, auth_config=auth))
        assert "error" not in lines[-1], lines
        assert lines[-1]["aux"]["Tag"] == "v1"
        digest = lines[-1]["aux"]["Digest"]
        with start_stack(supervisor=stack.supervisor) as fresh:
            fc = client(fresh)
            with pytest.raises(docker.errors.APIError) as denied:
                fc.api.pull(name, tag="v1")
            assert denied.value.status_code in (401, 403, 500)
            lines = list(fc.api.pull(name, tag="v1", stream=True, decode=True, auth_config=auth))
            assert lines[0] == {"status": "Pulling from private/busybox", "id": "v1"}
            by_status: dict[str, list[dict[str, object]]] = {}
            for line in lines:
                by_status.setdefault(str(line.get("status")), []).append(line)
            layer_id = by_status["Pulling fs layer"][0]["id"]
            assert isinstance(layer_id, str) and len(layer_id) == 12
            assert by_status["Pulling fs layer"][0]["progressDetail"] == {}
            downloading = by_status["Downloading"][-1]
            detail = downloading["progressDetail"]
            assert isinstance(detail, dict) and detail["current"] == detail["total"] > 0
            assert str(downloading["progress"]).startswith("[=")
            for status in ("Download complete", "Extracting", "Pull complete"):
                assert by_status[status][0]["id"] == layer_id
            assert lines[-2] == {"status": f"Digest: {digest}"}
            assert lines[-1] == {"status": f"Status: Downloaded newer image for {name}:v1"}
            assert fc.images.get(f"{name}:v1").id == busybox_id


def test_error_statuses(stack: Stack, busybox_tar: Path) -> None:
    c = client(stack)
    api = c.api
    for bad in ("UPPER/case", "a b", "-leading"):
        res = api._post(api._url("/images/create"), params={"fromImage": bad, "tag": "latest"})
        assert res.status_code == 400, (bad, res.text)
        assert "invalid reference format" in res.json()["message"]
    res = api._get(api._url("/images/{0}/json", "nosuch"))
    assert res.status_code == 404
    assert res.json() == {"message": "No such image: nosuch:latest"}
    res = api._delete(api._url("/images/{0}", "nosuch:v2"))
    assert res.status_code == 404
    c.images.load(busybox_tar.read_bytes())
    res = api._post(api._url("/images/{0}/tag", "busybox"), params={"repo": "Bad Repo"})
    assert res.status_code == 400 and "invalid reference format" in res.json()["message"]
    res = api._post(api._url("/images/{0}/tag", "busybox"), params={"repo": "good", "tag": "1"})
    assert res.status_code == 201
    res = api._get(api._url("/images/json"), params={"filters": json.dumps({"nope": ["x"]})})
    assert res.status_code == 400 and "invalid filter" in res.json()["message"]
    res = api._post(api._url("/images/load"), data=b"not a tar at all")
    lines = [json.loads(x) for x in res.text.splitlines() if x.strip()]
    assert res.status_code == 200 and "error" in lines[-1]
    # the daemon is still fine
    assert [sorted(i.tags) for i in c.images.list(name="good")] == [["busybox:latest", "good:1"]]


def test_clients_that_go_away_mid_stream(stack: Stack, busybox_tar: Path) -> None:
    import socket
    import time

    c = client(stack)
    c.images.load(busybox_tar.read_bytes())
    for _ in range(3):
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(stack.skiffd_sock))
            s.sendall(b"GET /images/get?names=busybox HTTP/1.1\r\nHost: skiffd\r\n\r\n")
            assert s.recv(64).startswith(b"HTTP/1.1 200")
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(stack.skiffd_sock))
            s.sendall(
                b"POST /images/load HTTP/1.1\r\nHost: skiffd\r\nContent-Length: 100000\r\n\r\n"
                + b"x" * 1000
            )
    time.sleep(0.5)
    assert c.ping()
    assert [i.tags for i in c.images.list()] == [["busybox:latest"]]
    assert b"".join(c.images.get("busybox").save())[:1]
    spool = stack.base / "skiffd-data" / "tmp"
    assert not spool.exists() or list(spool.iterdir()) == []


def test_inspect_shape_follows_the_api_version(stack: Stack, busybox_tar: Path) -> None:
    """Container/ContainerConfig until API 1.44 (compose 1.x reads them), VirtualSize
    until 1.43; neither from 1.45 on, as the API's description says."""
    client(stack).images.load(busybox_tar.read_bytes())
    shapes = {}
    for version in ("1.41", "1.44", "1.45"):
        api = docker.APIClient(base_url=f"unix://{stack.skiffd_sock}", version=version)
        shapes[version] = api.inspect_image("busybox")
        listed = api.images()
        assert ("VirtualSize" in listed[0]) == (version == "1.41"), version
    assert shapes["1.41"]["ContainerConfig"]["Cmd"] is None
    assert "VirtualSize" in shapes["1.41"] and "VirtualSize" not in shapes["1.44"]
    assert "ContainerConfig" in shapes["1.44"] and "Container" in shapes["1.44"]
    assert not {"Container", "ContainerConfig", "VirtualSize"} & set(shapes["1.45"])
    assert shapes["1.45"]["Config"]["Cmd"] == ["sh"]
