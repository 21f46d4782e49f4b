"""Start Debian's docker-registry (distribution 2.8) as a plain process on
127.0.0.1 with a free port and temporary storage, open or with htpasswd."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str  # 127.0.0.1:port
    root: str
    user: str = ""
    password: str = ""


@contextlib.contextmanager
def run_registry(*, auth: bool = False) -> Iterator[Registry]:
    if not os.path.exists(REGISTRY_BIN):
        import pytest

        pytest.skip("docker-registry not installed (apt-get install docker-registry)")
    root = tempfile.mkdtemp(prefix="skiff-registry-")
    port = free_port()
    reg = Registry(f"127.0.0.1:{port}", root)
    auth_yaml = ""
    if auth:
        reg.user, reg.password = "skiff", "s3cret-pass"
        htpasswd = os.path.join(root, "htpasswd")
        out = subprocess.run(
            ["htpasswd", "-Bbn", reg.user, reg.password], check=True, capture_output=True, text=True
        ).stdout
        with open(htpasswd, "w") as f:
            f.write(out)
        auth_yaml = f"auth:\n  htpasswd:\n    realm: skiff-test\n    path: {htpasswd}\n"
    config = os.path.join(root, "config.yml")
    with open(config, "w") as f:
        f.write(
            "version: 0.1\n"
            "log:\n  level: error\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root}/data\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{port}\n" + auth_yaml
        )
    log = open(os.path.join(root, "log"), "wb")  # noqa: SIM115 (lives as long as the registry)
    proc = subprocess.Popen(
        [REGISTRY_BIN, "serve", config],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/v2/")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(os.path.join(root, "log"), "rb") as lf:
                        raise RuntimeError(f"registry did not start: {lf.read()[-2000:]!r}")
                time.sleep(0.05)
        yield reg
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
