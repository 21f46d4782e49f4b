"""Contexts: skiff's store is the docker CLI's (each reads what the other wrote when
both use one config dir), the order of --host/DOCKER_HOST/--context/DOCKER_CONTEXT/
currentContext, and a context that reaches dockerd over TCP with mutual TLS."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from cli_daemons import DOCKER, SKIFF, Daemon

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def run(binary: str, config: Path, *args: str, env: dict[str, str] | None = None,
        use_flag: bool = True) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """skiff with --config DIR, docker with DOCKER_CONFIG=DIR; no DOCKER_HOST unless given."""
    e = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "SKIFF_"))}
    e.update(env or {})
    if binary == DOCKER:
        e["DOCKER_CONFIG"] = str(config)
        argv = [binary, *args]
    else:
        argv = [binary, "--config", str(config), *args] if use_flag else [binary, *args]
    return subprocess.run(argv, env=e, capture_output=True, text=True, timeout=60)


def same(skiff_out: str, docker_out: str) -> bool:
    """Equal but for the default endpoint (skiff's socket is not docker's), cell by cell."""
    ours = skiff_out.replace("unix:///run/skiff/skiff.sock", "unix:///var/run/docker.sock")
    return [line.split() for line in ours.splitlines()] == [
        line.split() for line in docker_out.splitlines()
    ]


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def test_context_store_shared_with_docker(config_dir: Path) -> None:
    out = run(SKIFF, config_dir, "context", "create", "work", "--description", "a box",
              "--docker", "host=tcp://10.1.2.3:2376")  # fmt: skip
    assert (out.returncode, out.stdout, out.stderr) == (
        0,
        "work\n",
        'Successfully created context "work"\n',
    )
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(b"work").hexdigest() / "meta.json"
    assert json.loads(meta.read_text()) == {
        "Name": "work",
        "Metadata": {"Description": "a box"},
        "Endpoints": {"docker": {"Host": "tcp://10.1.2.3:2376", "SkipTLSVerify": False}},
    }
    # the docker CLI reads it, and both print the same
    for args in (["context", "ls"], ["context", "inspect", "work"], ["context", "ls", "-q"],
                 ["context", "inspect", "default"], ["context", "show"],
                 ["context", "ls", "--format", "{{.Name}} {{.DockerEndpoint}}"]):  # fmt: skip
        assert same(ok(run(SKIFF, config_dir, *args)), ok(run(DOCKER, config_dir, *args))), args
    ok(run(SKIFF, config_dir, "context", "use", "work"))
    assert json.loads((config_dir / "config.json").read_text())["currentContext"] == "work"
    assert ok(run(DOCKER, config_dir, "context", "show")) == "work\n"
    assert same(
        ok(run(SKIFF, config_dir, "context", "ls")), ok(run(DOCKER, config_dir, "context", "ls"))
    )
    r = run(SKIFF, config_dir, "context", "rm", "work")
    assert r.returncode == 1 and "in use" in r.stderr
    # a context the docker CLI made is one skiff reads
    ok(
        run(
            DOCKER,
            config_dir,
            "context",
            "create",
            "made-by-docker",
            "--docker",
            "host=unix:///x.sock",
        )
    )
    assert ok(run(SKIFF, config_dir, "context", "inspect", "-f", "{{.Endpoints.docker.Host}}",
                  "made-by-docker")) == "unix:///x.sock\n"  # fmt: skip
    assert (
        ok(run(SKIFF, config_dir, "context", "rm", "-f", "work", "made-by-docker"))
        == "work\nmade-by-docker\n"
    )
    assert "currentContext" not in json.loads((config_dir / "config.json").read_text())
    assert ok(run(SKIFF, config_dir, "context", "ls", "-q")) == "default\n"
    assert ok(run(DOCKER, config_dir, "context", "ls", "-q")) == "default\n"
    # the config directory can also come from SKIFF_CONFIG
    ok(run(SKIFF, config_dir, "context", "create", "env", "--docker", "host=unix:///e.sock",
           env={"SKIFF_CONFIG": str(config_dir)}, use_flag=False))  # fmt: skip
    assert "env" in ok(run(DOCKER, config_dir, "context", "ls", "-q")).split()
    r = run(SKIFF, config_dir, "context", "create", "env")
    assert r.returncode == 1 and "already exists" in r.stderr


def test_context_selects_the_daemon(daemon: Daemon, config_dir: Path) -> None:
    host = daemon.host
    ok(run(SKIFF, config_dir, "context", "create", "e2e", "--docker", f"host={host}"))
    version = ok(
        run(DOCKER, config_dir, "--context", "e2e", "version", "-f", "{{.Server.Version}}")
    )
    assert (
        ok(run(SKIFF, config_dir, "--context", "e2e", "version", "-f", "{{.Server.Version}}"))
        == version
    )
    ok(run(SKIFF, config_dir, "context", "use", "e2e"))
    assert ok(run(SKIFF, config_dir, "info", "-f", "{{.ServerVersion}}")) == version
    bad = {"DOCKER_HOST": "unix:///nonexistent/d.sock"}
    # DOCKER_HOST wins over the current context ...
    for binary in (SKIFF, DOCKER):
        r = run(binary, config_dir, "ps", env=bad)
        assert r.returncode == 1 and "/nonexistent/d.sock" in r.stderr, binary
    # ... and --context over DOCKER_HOST, as in the docker CLI
    for binary in (SKIFF, DOCKER):
        assert ok(run(binary, config_dir, "--context", "e2e", "ps", "-q", env=bad)) is not None
    # --host wins over the current context
    r = run(SKIFF, config_dir, "-H", "unix:///nonexistent/h.sock", "ps")
    assert r.returncode == 1 and "/nonexistent/h.sock" in r.stderr
    # DOCKER_CONTEXT picks a context over currentContext
    ok(
        run(
            SKIFF,
            config_dir,
            "context",
            "create",
            "broken",
            "--docker",
            "host=unix:///nonexistent/c.sock",
        )
    )
    r = run(SKIFF, config_dir, "ps", env={"DOCKER_CONTEXT": "broken"})
    assert r.returncode == 1 and "/nonexistent/c.sock" in r.stderr
    r = run(SKIFF, config_dir, "--context", "e2e", "-H", host, "ps")
    assert r.returncode == 1 and "conflicting options" in r.stderr


def test_context_over_tcp_with_mutual_tls(daemon: Daemon, config_dir: Path) -> None:
    if not daemon.tls_port or daemon.tls_dir is None:
        pytest.skip("openssl is not installed: no certificates for the TLS listener")
    t = daemon.tls_dir
    host = f"tcp://127.0.0.1:{daemon.tls_port}"
    ok(run(SKIFF, config_dir, "context", "create", "tls", "--docker",
           f"host={host},ca={t / 'ca.pem'},cert={t / 'cert.pem'},key={t / 'key.pem'}"))  # fmt: skip
    tls_dir = config_dir / "contexts" / "tls" / hashlib.sha256(b"tls").hexdigest() / "docker"
    assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    assert (tls_dir / "key.pem").read_bytes() == (t / "key.pem").read_bytes()
    version = ok(run(SKIFF, config_dir, "--context", "tls", "version", "-f", "{{.Server.Version}}"))
    assert version.strip()
    assert (
        ok(run(DOCKER, config_dir, "--context", "tls", "version", "-f", "{{.Server.Version}}"))
        == version
    )
    inspect = json.loads(ok(run(SKIFF, config_dir, "context", "inspect", "tls")))
    assert inspect[0]["TLSMaterial"] == {"docker": ["ca.pem", "cert.pem", "key.pem"]}
    # containers run over the TLS connection too, streams included
    out = ok(
        run(SKIFF, config_dir, "--context", "tls", "run", "--rm", "busybox", "echo", "over-tls")
    )
    assert out == "over-tls\n"
    # the global TLS flags do the same without a context
    r = run(SKIFF, config_dir, "--tlsverify", "--tlscacert", str(t / "ca.pem"), "--tlscert",
            str(t / "cert.pem"), "--tlskey", str(t / "key.pem"), "-H", host, "version", "-f",
            "{{.Server.Version}}")  # fmt: skip
    assert ok(r) == version
    # without a client certificate the daemon refuses (mutual TLS)
    ok(
        run(
            SKIFF,
            config_dir,
            "context",
            "create",
            "nocert",
            "--docker",
            f"host={host},ca={t / 'ca.pem'}",
        )
    )
    r = run(SKIFF, config_dir, "--context", "nocert", "version")
    assert r.returncode == 1
