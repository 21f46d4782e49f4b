"""Bad input gets Docker's status codes and JSON messages, never a traceback, and a
client that goes away mid-stream leaves skiffd healthy."""

from __future__ import annotations

import json
import socket
import time

import pytest
from engine_daemons import Engine


def request(
    eng: Engine,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(eng.sock))
    hdrs = {"Host": "skiff", "Connection": "close", **(headers or {})}
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
        hdrs["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    s.sendall(head.encode() + b"\r\n" + (body or b""))
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head_b, _, rest = data.partition(b"\r\n\r\n")
    lines = head_b.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers_out = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if headers_out.get("transfer-encoding") == "chunked":
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2 :]
        rest = out
    return status, headers_out, rest


def message(body: bytes) -> str:
    return str(json.loads(body)["message"])


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1,2]", 400),
        (b'{"Image": ""}', 400),
        (
            b'{"Image": "busybox", "Cmd": "true", "HostConfig": {"RestartPolicy": {"Name": "sometimes"}}}',
            400,
        ),
        (
            b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"PortBindings": {"abc/tcp": []}}}',
            400,
        ),
        (b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Memory": 1}}', 400),
        (b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Binds": ["::"]}}', 400),
        (
            b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"Mounts": [{"Type": "nope", "Target": "/x"}]}}',
            400,
        ),
        (b'{"Image": "no-such-image-x:1", "Cmd": ["true"]}', 404),
        (b'{"Image": "busybox", "Cmd": 5}', 400),
        (b'{"Image": "busybox", "Env": "A=1"}', 400),
        (b'{"Image": "busybox", "Tty": "yes"}', 400),
        (b'{"Image": "busybox", "HostConfig": {"Memory": "lots"}}', 400),
        (b'{"Image": "busybox", "HostConfig": []}', 400),
        (b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"SecurityOpt": ["bogus=1"]}}', 400),
        (b'{"Image": "busybox", "Cmd": ["true"], "HostConfig": {"CapAdd": ["NOPE"]}}', 400),
        (b'{"Image": "UPPER/Case::bad", "Cmd": ["true"]}', 400),
        (
            b'{"Image": "busybox", "Cmd": ["true"], "Unknown": {"x": 1}, "HostConfig": {"Bogus": 1}}',
            201,
        ),
    ],
)
def test_create_with_bad_bodies(engine: Engine, body: bytes, status: int) -> None:
    got, _, out = request(engine, "POST", "/v1.45/containers/create", body)
    assert got == status, out
    if status >= 400:
        assert "Traceback" not in message(out)
    else:
        cid = json.loads(out)["Id"]
        assert request(engine, "DELETE", f"/containers/{cid}?force=1")[0] == 204


def test_not_found_and_conflicts(engine: Engine) -> None:
    status, _, out = request(engine, "GET", "/containers/nope-nope/json")
    assert status == 404 and message(out) == "No such container: nope-nope"
    status, _, out = request(
        engine,
        "POST",
        "/containers/create?name=bad%20name",
        b'{"Image": "busybox", "Cmd": ["true"]}',
    )
    assert status == 400 and "Invalid container name" in message(out)
    status, _, out = request(
        engine, "POST", "/containers/create?name=dup1", b'{"Image": "busybox", "Cmd": ["true"]}'
    )
    assert status == 201
    cid = json.loads(out)["Id"]
    status, _, out = request(
        engine, "POST", "/containers/create?name=dup1", b'{"Image": "busybox", "Cmd": ["true"]}'
    )
    assert status == 409
    assert message(out) == (
        f'Conflict. The container name "/dup1" is already in use by container "{cid}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )
    assert request(engine, "POST", f"/containers/{cid}/kill")[0] == 409
    assert request(engine, "POST", f"/containers/{cid}/wait?condition=bogus")[0] == 400
    assert request(engine, "GET", f"/containers/{cid}/logs")[0] == 400  # no stream chosen
    assert request(engine, "POST", "/exec/nope/start", b"{}")[0] == 404
    assert request(engine, "DELETE", f"/containers/{cid}")[0] == 204


def test_huge_body_is_refused(engine: Engine) -> None:
    body = b'{"Image": "busybox", "Labels": {"x": "' + b"a" * (17 << 20) + b'"}}'
    status, _, _out = request(engine, "POST", "/containers/create", body)
    assert status == 413


def test_client_gone_mid_stream_leaves_daemon_healthy(engine: Engine) -> None:
    cid = engine.docker(
        "run", "-d", "busybox", "sh", "-c", "while true; do echo x; done"
    ).stdout.strip()
    try:
        for path in (
            f"/containers/{cid}/logs?follow=1&stdout=1",
            f"/containers/{cid}/stats",
            "/events",
        ):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(engine.sock))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            s.recv(1000)
            s.close()
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(engine.sock))
        s.sendall(
            f"POST /containers/{cid}/attach?stream=1&stdout=1 HTTP/1.1\r\nHost: x\r\n"
            "Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n".encode()
        )
        s.recv(1000)
        s.close()
        time.sleep(0.5)
        assert request(engine, "GET", "/_ping")[0] == 200
        assert engine.docker("exec", cid, "echo", "ok").stdout == "ok\n"
    finally:
        engine.docker("rm", "-f", cid, check=False)
