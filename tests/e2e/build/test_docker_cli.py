"""The real docker CLI (DOCKER_BUILDKIT=0) and docker-py against skiffd
over Debian's containerd: builds, the cache, .dockerignore, errors, df, prune."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def skiffd(containerd: Any, moby: Any, ctr_base: Path) -> Iterator[str]:
    if shutil.which("docker") is None:
        pytest.skip("the docker CLI is not installed")
    sock = ctr_base / "skiffd.sock"
    env = dict(os.environ, SKIFF_BUILD_RUNTIME="io.containerd.runc.v2")
    log = open(ctr_base / "skiffd.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "skiff.engine.main", "-H", f"unix://{sock}",
         "--data-root", str(ctr_base / "data"), "--exec-root", str(ctr_base / "exec"),
         "--pidfile", str(ctr_base / "skiffd.pid"), "--containerd", containerd.address],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        yield f"unix://{sock}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def docker(host: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_BUILDKIT="0", DOCKER_HOST=host)
    r = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=180)
    if check and r.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def test_cli_build_cache_ignore_df_prune(skiffd: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nCOPY . /src/\nRUN ls /src > /listing && cat /listing\n"
        'ONBUILD RUN echo triggered > /trig\nCMD ["cat", "/listing"]\n'
    )
    (tmp_path / ".dockerignore").write_text("*.log\nsecret\n!keep.log\n")
    for name in ("app.py", "debug.log", "keep.log", "secret"):
        (tmp_path / name).write_text(name)
    r = docker(skiffd, "build", "-t", "cli/app:1", "--label", "built.by=test", str(tmp_path))
    assert "Successfully tagged cli/app:1" in r.stdout
    assert "debug.log" not in r.stdout and "secret" not in r.stdout
    assert "keep.log" in r.stdout and "app.py" in r.stdout
    again = docker(skiffd, "build", "-t", "cli/app:1", "--label", "built.by=test", str(tmp_path))
    assert again.stdout.count("Using cache") == 4
    inspect = docker(skiffd, "image", "inspect", "-f", "{{json .Config.Labels}}", "cli/app:1")
    assert '"built.by":"test"' in inspect.stdout
    # ONBUILD in a child build
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text("FROM cli/app:1\nRUN cat /trig\n")
    r = docker(skiffd, "build", "-q", str(child))
    assert r.stdout.strip().startswith("sha256:")
    df = docker(skiffd, "system", "df", "-v")
    assert "Build cache usage" in df.stdout
    pruned = docker(skiffd, "builder", "prune", "-f")
    assert "Total reclaimed space" in pruned.stdout


def test_cli_parse_error(skiffd: str, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\nFOO bar\n")
    r = docker(skiffd, "build", str(tmp_path), check=False)
    assert r.returncode != 0
    assert "dockerfile parse error on line 3: unknown instruction: FOO" in r.stderr + r.stdout


def test_docker_py_build(skiffd: str, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS a\nARG V=1\nRUN echo $V > /v\nFROM busybox\nCOPY --from=a /v /v\n"
        'USER 1000\nENTRYPOINT ["cat"]\nCMD ["/v"]\n'
    )
    client = docker_py.DockerClient(base_url=skiffd, version="1.41")
    try:
        image, logs = client.images.build(path=str(tmp_path), tag="py/app:2", buildargs={"V": "7"})
        text = "".join(chunk.get("stream", "") for chunk in logs)
        assert "Successfully built" in text
        assert image.attrs["Config"]["User"] == "1000"
        assert image.attrs["Config"]["Entrypoint"] == ["cat"]
        assert "py/app:2" in image.tags
    finally:
        client.close()
