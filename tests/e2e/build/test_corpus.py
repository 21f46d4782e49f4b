"""A corpus of Dockerfiles built end to end by the real docker CLI
(DOCKER_BUILDKIT=0) and docker-py against skiffd over both supervisors:
every instruction and flag issue 7 lists; the images are then run and
inspected (files, owners, modes, users, env, entrypoints, labels).
"""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from build_daemons import BUSYBOX_TAR, Stack


def write_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
    return root


def tar_bytes(members: dict[str, bytes], *, gz: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1_600_000_000
            tar.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, mtime=0) if gz else raw


def inspect(stack: Stack, image: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(stack.docker("image", "inspect", image).stdout)
    return data[0]


def run(stack: Stack, image: str, *cmd: str, run_args: tuple[str, ...] = ()) -> str:
    """The output of a container of `image` (detached, waited for, logs read:
    an attached `docker run` sometimes hangs after its output, an engine
    fault outside the builder)."""
    cid = stack.docker("run", "-d", "--network", "none", *run_args, image, *cmd).stdout.strip()
    try:
        code = stack.docker("wait", cid, timeout=60).stdout.strip()
        logs = stack.docker("logs", cid)
        assert code == "0", (code, logs.stdout, logs.stderr)
        return logs.stdout
    finally:
        stack.docker("rm", "-f", cid, check=False)


def facts(stack: Stack, image: str, script: str) -> dict[str, str]:
    """Run `script` in the image (as its ENTRYPOINT sh -c); lines `key=value` come back."""
    out = run(stack, image, script)
    result = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            result[key] = value
    return result


@contextlib.contextmanager
def http_server(files: dict[str, bytes]) -> Iterator[str]:
    """A tiny HTTP server on 127.0.0.1 serving `files`; yields its base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path.lstrip("/"))
            if data is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Last-Modified", "Sat, 01 Jan 2022 00:00:00 GMT")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


CORPUS_DOCKERFILE = r"""# syntax=docker/dockerfile:1
# escape=\
ARG BASE=busybox
ARG TAG=latest
FROM --platform=linux/amd64 ${BASE}:${TAG} AS base
ARG BASE
RUN echo "base=$BASE" > /base.txt

FROM base AS unused
RUN echo never-built && exit 7

FROM base
ARG VERSION=1.0
ARG EMPTY
ARG TARGETARCH
ARG TARGETPLATFORM
ARG BUILDPLATFORM
ENV APP_HOME=/app \
    GREETING="hello world"
ENV LEGACY legacy value here
ENV DEF=${EMPTY:-fallback} ALT=${VERSION:+has-version} NOALT=x${EMPTY:+y} \
    DEF2=${VERSION:-unused}
WORKDIR $APP_HOME
WORKDIR sub
RUN <<EOF
set -e
echo "heredoc $VERSION in $(pwd)" > /heredoc.txt
echo "$TARGETARCH $TARGETPLATFORM $BUILDPLATFORM" > /platform.txt
EOF
COPY <<EOF /etc/app.conf
name=$GREETING
EOF
COPY <<'EOF' /etc/raw.conf
name=$GREETING
EOF
RUN echo "grp:x:2000:" >> /etc/group && echo "appuser:x:1500:2000::/home/appuser:/bin/sh" >> /etc/passwd
COPY --chown=appuser:grp owned.txt /owned-names.txt
COPY --chown=1234:5678 owned.txt /owned-ids.txt
COPY --chown=appuser owned.txt /owned-user.txt
COPY --chmod=0750 script.sh /usr/local/bin/
COPY --link linked.txt /linked/
COPY files/*.txt /wild/
COPY files/ /dir-contents/
COPY files /dir-noslash
COPY single.txt /renamed.txt
COPY single.txt /intodir/
COPY single.txt files/a.txt /multi/
ADD archive.tar.gz /extracted/
ADD plain.tar /extracted-plain
COPY archive.tar.gz /not-extracted/
ADD single.txt /added-file.txt
COPY --from=base /base.txt /from-stage.txt
COPY --from=busybox /bin/busybox /from-image/busybox
SHELL ["/bin/sh", "-e", "-c"]
RUN test "$(cat /etc/app.conf)" = "name=hello world" && echo shell-ok > /shell.txt
USER appuser
RUN id -u > /tmp/id-u.txt
WORKDIR /srv/made
WORKDIR /app/sub
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /more
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD wget -q localhost || exit 1
LABEL org.opencontainers.image.title="corpus" version=$VERSION \
      "spaced key"="spaced value"
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /heredoc.txt"]
"""


@pytest.fixture(scope="session")
def corpus(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Stack, str, str, Path]:
    """The big Dockerfile built once per stack by the docker CLI."""
    ctx = write_tree(
        tmp_path_factory.mktemp("corpus"),
        {
            "Dockerfile": CORPUS_DOCKERFILE,
            "owned.txt": "owned\n",
            "script.sh": "#!/bin/sh\necho script\n",
            "linked.txt": "linked\n",
            "files/a.txt": "a\n",
            "files/b.txt": "b\n",
            "files/c.md": "c\n",
            "files/nested/deep.txt": "deep\n",
            "single.txt": "single\n",
            "archive.tar.gz": tar_bytes({"arch/one.txt": b"one\n", "two.txt": b"two\n"}, gz=True),
            "plain.tar": tar_bytes({"p.txt": b"plain\n"}),
        },
    )
    r = stack.docker(
        "build", "-t", "corpus/all:1", "--build-arg", "VERSION=2.5", "--platform", "linux/amd64",
        str(ctx),
    )  # fmt: skip
    return stack, r.stdout, r.stderr, ctx


def test_corpus_with_docker_py_gives_the_same_image(corpus: Any) -> None:
    stack, _, _, ctx = corpus
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    client = docker_py.DockerClient(base_url=stack.host, version="1.41")
    try:
        image, logs = client.images.build(
            path=str(ctx), tag="corpus/py:1", buildargs={"VERSION": "2.5"}, platform="linux/amd64"
        )
        text = "".join(chunk.get("stream", "") for chunk in logs)
    finally:
        client.close()
    assert text.count("Using cache") == text.count("Step ") - 2  # all but the two FROMs
    assert image.id == inspect(stack, "corpus/all:1")["Id"]


def test_corpus_output(corpus: tuple[Stack, str, str, Path]) -> None:
    _, out, _, _ = corpus
    assert "Step 1/" in out and "FROM --platform=linux/amd64 ${BASE}:${TAG} AS base" in out
    assert "never-built" not in out  # the unused stage is skipped
    assert "Successfully tagged corpus/all:1" in out


def test_corpus_config(corpus: tuple[Stack, str, str, Path]) -> None:
    stack = corpus[0]
    info = inspect(stack, "corpus/all:1")
    c = info["Config"]
    env = dict(e.split("=", 1) for e in c["Env"])
    assert env["APP_HOME"] == "/app" and env["GREETING"] == "hello world"
    assert env["LEGACY"] == "legacy value here"
    assert env["DEF"] == "fallback" and env["ALT"] == "has-version" and env["NOALT"] == "x"
    assert env["DEF2"] == "2.5"
    assert "VERSION" not in env  # ARGs do not persist
    assert c["WorkingDir"] == "/app/sub"
    assert c["User"] == "appuser"
    assert c["ExposedPorts"] == {"80/tcp": {}, "443/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}, "/logs": {}, "/more": {}}
    assert c["StopSignal"] == "SIGQUIT"
    assert c["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
        "Retries": 2,
    }
    assert c["Labels"] == {
        "org.opencontainers.image.title": "corpus",
        "version": "2.5",
        "spaced key": "spaced value",
    }
    assert c["Entrypoint"] == ["/bin/sh", "-c"] and c["Cmd"] == ["cat /heredoc.txt"]
    assert c["Shell"] == ["/bin/sh", "-e", "-c"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    history = json.loads(
        stack.docker("history", "--no-trunc", "--format", "{{json .CreatedBy}}", "corpus/all:1")
        .stdout.replace("\n", ",")
        .join("[]")
        .replace(",]", "]")
    )
    assert any(h.startswith("|1 VERSION=2.5 /bin/sh -e -c test") for h in history), history


def test_corpus_runs(corpus: tuple[Stack, str, str, Path]) -> None:
    stack = corpus[0]
    assert run(stack, "corpus/all:1") == "heredoc 2.5 in /app/sub\n"
    script = (
        "for f in /owned-names.txt /owned-ids.txt /owned-user.txt /usr/local/bin/script.sh; do "
        'echo "$f=$(stat -c "%u:%g %a" $f)"; done; '
        'echo "id=$(id -u):$(id -g)"; echo "pwd=$(pwd)"; '
        'echo "platform=$(cat /platform.txt)"; echo "base=$(cat /base.txt /from-stage.txt | tr "\n" " ")"; '
        'echo "conf=$(cat /etc/app.conf)"; echo "raw=$(cat /etc/raw.conf)"; '
        'echo "linked=$(cat /linked/linked.txt)"; echo "wild=$(ls /wild | tr "\n" " ")"; '
        'echo "dir=$(cd /dir-contents && find . | sort | tr "\n" " ")"; '
        'echo "noslash=$(cd /dir-noslash && find . | sort | tr "\n" " ")"; '
        'echo "renamed=$(cat /renamed.txt)"; echo "intodir=$(cat /intodir/single.txt)"; '
        'echo "multi=$(ls /multi | tr "\n" " ")"; '
        'echo "extracted=$(cd /extracted && find . -type f | sort | tr "\n" " ")"; '
        'echo "plain=$(cat /extracted-plain/p.txt)"; '
        'echo "notextracted=$(ls /not-extracted)"; echo "added=$(cat /added-file.txt)"; '
        'echo "busybox=$(cmp /bin/busybox /from-image/busybox && echo same)"; '
        'echo "shell=$(cat /shell.txt)"; echo "runid=$(cat /tmp/id-u.txt)"'
    )
    got = facts(stack, "corpus/all:1", script)
    assert got["/owned-names.txt"] == "1500:2000 644"
    assert got["/owned-ids.txt"] == "1234:5678 644"
    assert got["/owned-user.txt"] == "1500:1500 644"  # no group "appuser": gid = uid
    assert got["/usr/local/bin/script.sh"] == "0:0 750"
    assert got["id"] == "1500:2000" and got["pwd"] == "/app/sub"
    assert got["platform"] == "amd64 linux/amd64 linux/amd64"
    assert got["base"] == "base=busybox base=busybox "
    assert got["conf"] == "name=hello world" and got["raw"] == "name=$GREETING"
    assert got["linked"] == "linked"
    assert got["wild"] == "a.txt b.txt "
    assert got["dir"] == ". ./a.txt ./b.txt ./c.md ./nested ./nested/deep.txt "
    assert got["noslash"] == got["dir"]
    assert got["renamed"] == "single" and got["intodir"] == "single"
    assert got["multi"] == "a.txt single.txt "
    assert got["extracted"] == "./arch/one.txt ./two.txt "
    assert got["plain"] == "plain"
    assert got["notextracted"] == "archive.tar.gz"
    assert got["added"] == "single"
    assert got["busybox"] == "same"
    assert got["shell"] == "shell-ok" and got["runid"] == "1500"
    # WORKDIR made its directories in the image (not the runtime at run time)
    made = run(stack, "corpus/all:1", "stat -c %u:%g:%a /srv/made", run_args=("-w", "/"))
    assert made == "0:0:755\n"


def test_target_buildargs_hosts_shm_with_docker_py(stack: Stack, tmp_path: Path) -> None:
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    write_tree(
        tmp_path,
        {
            "Dockerfile": (
                "FROM busybox AS builder\nARG NAME=default\nARG HTTP_PROXY\n"
                'RUN echo "$NAME" > /name && echo "proxy=$HTTP_PROXY" > /proxy && '
                "grep buildhost /etc/hosts > /hosts.txt && "
                "df -k /dev/shm | tail -1 | awk '{print $2}' > /shm.txt\n"
                "FROM busybox AS final\nCOPY --from=builder /name /hosts.txt /shm.txt /proxy /out/\n"
                'USER 1000:1000\nENTRYPOINT ["/bin/sh", "-c"]\nCMD ["cat /out/name"]\n'
                "FROM final AS after\nRUN exit 9\n"
            )
        },
    )
    client = docker_py.DockerClient(base_url=stack.host, version="1.41")
    try:
        image, logs = client.images.build(
            path=str(tmp_path), tag="py/target:1", target="final",
            buildargs={"NAME": "from-py", "HTTP_PROXY": "http://proxy.invalid:3128"},
            extra_hosts={"buildhost": "10.1.2.3"}, shmsize=64 * 1024 * 1024,
            platform="linux/amd64", labels={"from": "docker-py"}, network_mode="host",
        )  # fmt: skip
        text = "".join(chunk.get("stream", "") for chunk in logs)
        assert "exit 9" not in text
        assert image.attrs["Config"]["User"] == "1000:1000"
        assert image.attrs["Config"]["Labels"] == {"from": "docker-py"}
        out = client.containers.run(
            "py/target:1",
            ["cat /out/name /out/hosts.txt /out/shm.txt /out/proxy"],
            remove=True,
            network_mode="none",
        ).decode()
        lines = out.split("\n")
        assert lines[0] == "from-py"
        assert lines[1].split() == ["10.1.2.3", "buildhost"]
        assert lines[2] == "65536"
        assert lines[3] == "proxy=http://proxy.invalid:3128"
        # the proxy args stay out of the history, as Docker keeps them secret
        history = image.history()
        assert not any("proxy.invalid" in (h.get("CreatedBy") or "") for h in history)
    finally:
        client.close()


def test_cache_from_after_prune(stack: Stack, tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f > /g\nENV Z=1\n", "f": "cached\n"},
    )
    first = stack.docker("build", "-q", "-t", "cachefrom/src:1", str(tmp_path)).stdout.strip()
    stack.docker("builder", "prune", "-f")
    plain = stack.docker("build", "--no-cache", str(tmp_path)).stdout
    assert "Using cache" not in plain
    stack.docker("builder", "prune", "-f")
    r = stack.docker("build", "--cache-from", "cachefrom/src:1", str(tmp_path))
    assert r.stdout.count("Using cache") >= 2, r.stdout
    built = r.stdout.strip().splitlines()[-1].split()[-1]
    assert first.split(":", 1)[1].startswith(built)


def test_add_url(stack: Stack, tmp_path: Path) -> None:
    with http_server({"remote.txt": b"from the web\n"}) as base:
        write_tree(
            tmp_path,
            {
                "Dockerfile": (
                    f"FROM busybox\nADD {base}/remote.txt /fetched/\n"
                    f"ADD --chmod=644 {base}/remote.txt /named.txt\n"
                )
            },
        )
        stack.docker("build", "-t", "url/add:1", str(tmp_path))
    out = run(
        stack, "url/add:1", "sh", "-c",
        "cat /fetched/remote.txt; stat -c %a /fetched/remote.txt /named.txt",
    )  # fmt: skip
    assert out.split("\n")[:3] == ["from the web", "600", "644"]
    port = closed_port()
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nADD http://127.0.0.1:{port}/x.txt /x\n")
    r = stack.docker("build", str(tmp_path), check=False)
    assert r.returncode != 0
    assert f"failed to GET http://127.0.0.1:{port}/x.txt" in r.stderr + r.stdout
    assert "Connection refused" in r.stderr + r.stdout


def test_context_escapes_refused(stack: Stack, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write_tree(outside, {"secret.txt": "top secret\n"})
    ctx = tmp_path / "ctx"
    write_tree(ctx, {"ok.txt": "ok\n"})
    os.symlink(str(outside / "secret.txt"), ctx / "abs-link")
    os.symlink("../outside", ctx / "rel-link")
    for source in ("../outside/secret.txt", "/outside/secret.txt", str(outside / "secret.txt"),
                   "abs-link", "rel-link/secret.txt"):  # fmt: skip
        (ctx / "Dockerfile").write_text(f"FROM busybox\nCOPY {source} /stolen\n")
        r = stack.docker("build", str(ctx), check=False)
        assert r.returncode != 0, (source, r.stdout)
        assert "top secret" not in r.stdout
        assert "file not found in build context" in r.stderr + r.stdout, (source, r.stderr)
    # an archive that ADD would unpack may not climb out of its destination
    (ctx / "evil.tar").write_bytes(tar_bytes({"../../etc/evil": b"pwned\n"}))
    (ctx / "Dockerfile").write_text("FROM busybox\nADD evil.tar /dest/\n")
    r = stack.docker("build", str(ctx), check=False)
    assert r.returncode != 0 and "escapes /dest" in r.stderr + r.stdout, r.stdout + r.stderr
    # a context tar whose names climb out is refused before anything runs
    docker_py = pytest.importorskip("docker", reason="docker-py is not installed")
    hostile = io.BytesIO()
    with tarfile.open(fileobj=hostile, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\n"), ("../../escaped", b"x")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    hostile.seek(0)
    api = docker_py.APIClient(base_url=stack.host, version="1.41")
    try:
        msgs = list(api.build(fileobj=hostile, custom_context=True, decode=True))
    finally:
        api.close()
    errors = [m["error"] for m in msgs if "error" in m]
    assert errors and "invalid build context" in errors[0]


def test_base_image_pulled_from_registry(stack: Stack, tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integration" / "images"))
    from registry_server import run_registry

    with run_registry() as registry:
        ref = f"{registry.host}/lib/base:1"
        subprocess.run(
            ["skopeo", "copy", "--dest-tls-verify=false", "--quiet",
             f"docker-archive:{BUSYBOX_TAR}", f"docker://{ref}"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        write_tree(tmp_path, {"Dockerfile": f"FROM {ref}\nRUN echo pulled > /p\n"})
        r = stack.docker("build", "-t", "pulled/base:1", str(tmp_path))
        assert "Pulling from lib/base" in r.stdout, r.stdout
        assert "Downloaded newer image for" in r.stdout
        assert stack.docker("image", "inspect", ref).returncode == 0
        again = stack.docker("build", "--pull", str(tmp_path))
        assert "Image is up to date" in again.stdout
    out = run(stack, "pulled/base:1", "cat", "/p")
    assert out == "pulled\n"
