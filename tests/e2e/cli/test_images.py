"""skiff against Debian's dockerd: image commands, and pull/push through Debian's
docker-registry on 127.0.0.1 (dockerd started with --insecure-registry for it)."""

from __future__ import annotations

import json
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import pytest
from cli_daemons import Daemon
from cli_fixtures import Runner, skiff_bytes

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def test_images_tag_rmi_history(skiff: Runner, docker: Runner) -> None:
    repo = f"local/t{uuid.uuid4().hex[:8]}"
    ok(skiff("tag", "busybox", f"{repo}:v1"))
    try:
        # only images of busybox's age: a fresh image's CREATED can tick between the two calls
        old = ["--filter", "reference=busybox", "--filter", f"reference={repo}:*"]
        for args in (["images", *old], ["images", "-q", *old],
                     ["images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}", *old],
                     ["images", repo], ["image", "ls", "--filter", f"reference={repo}:*"],
                     ["history", "busybox"], ["history", "-q", "busybox"],
                     ["history", "--format", "json", "busybox"],
                     ["history", "--human=false", "--no-trunc", "busybox"],
                     ["images", "--format", "table {{.Repository}}\t{{.Tag}}\t{{.ID}}", *old],
                     ["images", "--format", "{{json .}}", *old],
                     ["images", "--digests", "--format", "{{json .}}", *old],
                     ["images", "--digests", *old]):  # fmt: skip
            # docker orders the tags of one image by Go map iteration (randomly): compare
            # the header (the table forms have one), then the rows as a set
            s, d = ok(skiff(*args)).splitlines(), ok(docker(*args)).splitlines()
            formats = [a for a in args if "{{" in a]
            h = 0 if "-q" in args or (formats and not formats[0].startswith("table")) else 1
            assert (s[:h], sorted(s[h:])) == (d[:h], sorted(d[h:])), args
        assert ok(skiff("image", "inspect", "-f", "{{index .RepoTags 0}}", f"{repo}:v1")).strip() in (
            f"{repo}:v1", "busybox:latest")  # fmt: skip
        out = ok(skiff("rmi", f"{repo}:v1"))
        assert out == f"Untagged: {repo}:v1\n"
        r, d = skiff("rmi", f"{repo}:v1"), docker("rmi", f"{repo}:v1")
        assert (r.returncode, r.stderr) == (d.returncode, d.stderr) == (1, r.stderr)
    finally:
        skiff("rmi", f"{repo}:v1")


def test_save_load_roundtrip(
    skiff: Runner, daemon: Daemon, config_dir: Path, tmp_path: Path
) -> None:
    repo = f"saved/t{uuid.uuid4().hex[:8]}:v1"
    ok(skiff("tag", "busybox", repo))
    archive = tmp_path / "img.tar"
    ok(skiff("save", "-o", str(archive), repo))
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert manifest[0]["RepoTags"] == [repo]
    ok(skiff("rmi", repo))
    out = ok(skiff("load", "-i", str(archive)))
    assert out == f"Loaded image: {repo}\n"
    assert ok(skiff("images", "-q", repo)).strip() == ok(skiff("images", "-q", "busybox")).strip()
    # stdout is a pipe here: the archive goes there
    assert skiff_bytes(daemon, config_dir, "save", repo)[257:262] == b"ustar"
    ok(skiff("rmi", repo))
    r = skiff("load", "-i", str(tmp_path / "missing.tar"))
    assert r.returncode == 1 and "no such file or directory" in r.stderr


def test_export_import(skiff: Runner, tmp_path: Path) -> None:
    n = f"t{uuid.uuid4().hex[:10]}"
    ok(skiff("run", "--name", n, "busybox", "sh", "-c", "echo made-in-container > /marker"))
    archive = tmp_path / "fs.tar"
    try:
        ok(skiff("export", "-o", str(archive), n))
        with tarfile.open(archive) as tar:
            assert "marker" in tar.getnames()
        repo = f"imported/t{uuid.uuid4().hex[:8]}:v1"
        out = ok(
            skiff("import", "-c", 'CMD ["cat", "/marker"]', "-m", "from skiff", str(archive), repo)
        )
        assert out.startswith("sha256:")
        assert ok(skiff("run", "--rm", repo)) == "made-in-container\n"
        assert ok(skiff("history", "--format", "{{.Comment}}", repo)) == "from skiff\n"
        ok(skiff("rmi", repo))
    finally:
        skiff("rm", "-f", n)


def test_push_pull_through_registry(skiff: Runner, docker: Runner, daemon: Daemon,
                                    config_dir: Path) -> None:  # fmt: skip
    if not daemon.registry_port:
        pytest.skip("docker-registry is not installed")
    ref = f"127.0.0.1:{daemon.registry_port}/skiff/busybox:e2e"
    ok(skiff("tag", "busybox", ref))
    out = ok(skiff("push", ref))
    assert f"The push refers to repository [127.0.0.1:{daemon.registry_port}/skiff/busybox]" in out
    assert "e2e: digest: sha256:" in out
    ok(skiff("rmi", ref))
    out = ok(skiff("pull", ref))
    lines = out.splitlines()
    assert lines[0] == "e2e: Pulling from skiff/busybox"
    assert any(line.startswith("Digest: sha256:") for line in lines)
    assert lines[-1] == ref
    assert "Downloading [" not in out, "no progress bars outside a terminal"
    assert ok(skiff("run", "--rm", ref, "echo", "pulled")) == "pulled\n"
    # a missing tag fails like docker's
    s = skiff("pull", ref.replace(":e2e", ":missing"))
    d = docker("pull", ref.replace(":e2e", ":missing"))
    assert s.returncode == d.returncode == 1
    assert "manifest unknown" in s.stderr
    # run pulls what is missing, reporting it on stderr
    ok(skiff("rmi", ref))
    r = skiff("run", "--rm", ref, "echo", "auto")
    assert (r.returncode, r.stdout) == (0, "auto\n")
    assert f"Unable to find image '{ref}' locally" in r.stderr
    ok(skiff("rmi", ref))
    # login stores credentials in the config file; logout removes them
    server = f"127.0.0.1:{daemon.registry_port}"
    r = skiff("login", "-u", "someone", "--password-stdin", server, input="secret\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Login Succeeded"
    auths = json.loads((config_dir / "config.json").read_text())["auths"]
    import base64

    assert base64.b64decode(auths[server]["auth"]) == b"someone:secret"
    assert ok(skiff("logout", server)) == f"Removing login credentials for {server}\n"
    assert server not in json.loads((config_dir / "config.json").read_text())["auths"]


def test_prune(skiff: Runner, docker: Runner, tmp_path: Path) -> None:
    out = ok(skiff("image", "prune", "-f"))
    assert out.strip().endswith("Total reclaimed space: 0B")
    n = f"t{uuid.uuid4().hex[:10]}"
    cid = ok(skiff("create", "--name", n, "busybox", "true")).strip()
    out = ok(skiff("container", "prune", "-f", "--filter", f"label=none-{n}"))
    assert out == "Total reclaimed space: 0B\n"
    out = ok(skiff("container", "prune", "-f"))
    assert f"Deleted Containers:\n{cid}\n" in out
    v = ok(skiff("volume", "create")).strip()  # anonymous: prune takes it
    out = ok(skiff("volume", "prune", "-f"))
    assert f"Deleted Volumes:\n{v}\n" in out
    # answering no to the question leaves everything
    r = skiff("system", "prune", input="n\n")
    assert r.returncode == 0 and "Are you sure you want to continue? [y/N]" in r.stdout
    for args in (["system", "prune"], ["system", "prune", "-a"], ["system", "prune", "--volumes"],
                 ["builder", "prune"], ["builder", "prune", "-a"]):  # fmt: skip
        assert skiff(*args, input="n\n").stdout == docker(*args, input="n\n").stdout, args
    # the build cache goes too: skiffd keeps one for RUN steps (dockerd's classic builder
    # keeps none, there the counts are 0 throughout)
    df = ["system", "df", "--format", "{{.Type}} {{.TotalCount}}"]
    for i, prune in enumerate((["builder", "prune", "-f"], ["system", "prune", "-f"])):
        (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {n}-{i} > /n\n")
        ok(skiff("build", "-q", str(tmp_path)))
        cached = "Build Cache 0" not in ok(skiff(*df)).splitlines()
        out = ok(skiff(*prune))
        assert "Build Cache 0" in ok(skiff(*df)).splitlines(), prune
        assert ok(skiff(*df)) == ok(docker(*df))
        assert ("Deleted build cache objects:\n" in out) == cached, prune
    s, d = ok(skiff("system", "prune", "-f")), ok(docker("system", "prune", "-f"))
    assert s == d == "Total reclaimed space: 0B\n"
    s, d = ok(skiff("builder", "prune", "-f")), ok(docker("builder", "prune", "-f"))
    assert s == d == "Total reclaimed space: 0B\n"


def test_system_df_matches_docker(skiff: Runner, docker: Runner, tmp_path: Path) -> None:
    # images, a container with a volume and some writes, an unused volume, build cache
    n, vol, spare = (f"t{uuid.uuid4().hex[:10]}" for _ in range(3))
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {n} > /n\n")
    ok(skiff("build", "-q", "-t", f"local/{n}", str(tmp_path)))
    ok(skiff("volume", "create", spare))
    ok(skiff("run", "-d", "--name", n, "-v", f"{vol}:/d", "busybox", "sh", "-c",
             "dd if=/dev/zero of=/d/f bs=1k count=20; dd if=/dev/zero of=/x bs=1k count=30;"
             " sleep 300"))  # fmt: skip
    try:
        time.sleep(1)
        for args in (["system", "df"], ["system", "df", "-v"],
                     ["system", "df", "--format", "{{.Type}}:{{.Reclaimable}}"]):  # fmt: skip
            # the -v tables hold relative times: a second may tick between the two calls
            for _ in range(3):
                s, d = ok(skiff(*args)), ok(docker(*args))
                if s == d:
                    break
            assert s == d, args
    finally:
        skiff("rm", "-f", n)
        skiff("volume", "rm", vol, spare)
        skiff("rmi", f"local/{n}")
        skiff("builder", "prune", "-f")
