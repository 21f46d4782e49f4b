"""The real docker CLI (DOCKER_BUILDKIT=0) and docker-py against skiffd
over both supervisors: builds, the cache, .dockerignore, errors, df, prune."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from build_daemons import Stack


def docker(host: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return host.docker(*args, check=check)


def test_cli_build_cache_ignore_df_prune(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nCOPY . /src/\nRUN ls /src > /listing && cat /listing\n"
        'ONBUILD RUN echo triggered > /trig\nCMD ["cat", "/listing"]\n'
    )
    (tmp_path / ".dockerignore").write_text("*.log\nsecret\n!keep.log\n")
    for name in ("app.py", "debug.log", "keep.log", "secret"):
        (tmp_path / name).write_text(name)
    r = docker(stack, "build", "-t", "cli/app:1", "--label", "built.by=test", str(tmp_path))
    assert "Successfully tagged cli/app:1" in r.stdout
    assert "debug.log" not in r.stdout and "secret" not in r.stdout
    assert "keep.log" in r.stdout and "app.py" in r.stdout
    again = docker(stack, "build", "-t", "cli/app:1", "--label", "built.by=test", str(tmp_path))
    assert again.stdout.count("Using cache") == 4
    inspect = docker(stack, "image", "inspect", "-f", "{{json .Config.Labels}}", "cli/app:1")
    assert '"built.by":"test"' in inspect.stdout
    # ONBUILD in a child build
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text("FROM cli/app:1\nRUN cat /trig\n")
    r = docker(stack, "build", "-q", str(child))
    assert r.stdout.strip().startswith("sha256:")
    df = docker(stack, "system", "df", "-v")
    assert "Build cache usage" in df.stdout
    pruned = docker(stack, "builder", "prune", "-f")
    assert "Total reclaimed space" in pruned.stdout


def test_cli_parse_error(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN true\nFOO bar\n")
    r = docker(stack, "build", str(tmp_path), check=False)
    assert r.returncode != 0
    assert "dockerfile parse error on line 3: unknown instruction: FOO" in r.stderr + r.stdout


def test_docker_py_build(stack: Stack, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox AS a\nARG V=1\nRUN echo $V > /v\nFROM busybox\nCOPY --from=a /v /v\n"
        'USER 1000\nENTRYPOINT ["cat"]\nCMD ["/v"]\n'
    )
    client = docker_py.DockerClient(base_url=stack.host, version="1.41")
    try:
        image, logs = client.images.build(path=str(tmp_path), tag="py/app:2", buildargs={"V": "7"})
        text = "".join(chunk.get("stream", "") for chunk in logs)
        assert "Successfully built" in text
        assert image.attrs["Config"]["User"] == "1000"
        assert image.attrs["Config"]["Entrypoint"] == ["cat"]
        assert "py/app:2" in image.tags
    finally:
        client.close()
