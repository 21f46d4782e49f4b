"""Interop at the OCI runtime CLI boundary: Debian's dockerd (with --add-runtime
style `runtimes` config) and Debian's containerd (containerd-shim-runc-v2 with
BinaryName) run busybox through the runtime under test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from interop_daemons import (
    start_in_private_ns,
    stop_daemon,
    wait_for_socket,
)

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]


def need(binary: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.skip(f"{binary} is not installed")
    return path


def containerd_pids(exec_root: Path) -> list[int]:
    pid_file = exec_root / "containerd" / "containerd.pid"
    try:
        return [int(pid_file.read_text().strip())]
    except (OSError, ValueError):
        return []


def test_dockerd_runs_busybox_with_runtime(
    base_dir: Path, runtime_bin: str, busybox_tar: Path
) -> None:
    dockerd = need("dockerd")
    docker = need("docker")
    sock = base_dir / "docker.sock"
    exec_root = base_dir / "exec"
    config = base_dir / "daemon.json"
    config.write_text(json.dumps({"runtimes": {"skiff": {"path": runtime_bin}}}))
    log = base_dir / "dockerd.log"
    argv = [
        dockerd,
        "--data-root", str(base_dir / "data"),
        "--exec-root", str(exec_root),
        "--pidfile", str(base_dir / "dockerd.pid"),
        "-H", f"unix://{sock}",
        "--config-file", str(config),
        "--bridge=none",
        "--iptables=false",
        "--ip6tables=false",
    ]  # fmt: skip
    proc = start_in_private_ns(argv, log)
    env = {
        **os.environ,
        "DOCKER_HOST": f"unix://{sock}",
        "DOCKER_CONFIG": str(base_dir / "cli"),
    }
    env.pop("DOCKER_CONTEXT", None)

    def docker_cmd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [docker, *args], env=env, capture_output=True, text=True, timeout=timeout
        )

    try:
        wait_for_socket(sock, proc, log, timeout=30)
        deadline = time.monotonic() + 30
        while docker_cmd("version").returncode != 0:
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.2)
        assert int((base_dir / "dockerd.pid").read_text()) == proc.pid

        info = json.loads(docker_cmd("info", "--format", "{{json .Runtimes}}").stdout)
        assert "skiff" in info, info

        loaded = docker_cmd("load", "-i", str(busybox_tar))
        assert loaded.returncode == 0, loaded.stderr
        image = loaded.stdout.strip().rsplit(" ", 1)[-1]  # "Loaded image: busybox:latest"

        res = docker_cmd(
            "run", "--runtime", "skiff", "--network", "none", "--rm", image, "echo", "hi",
            timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, f"{res.stderr}\n--- dockerd log ---\n{log.read_text()[-4000:]}"
        assert res.stdout == "hi\n"

        # The exit status of the container comes back through every layer.
        res = docker_cmd(
            "run", "--runtime", "skiff", "--network", "none", "--rm", image, "sh", "-c", "exit 3"
        )  # fmt: skip
        assert res.returncode == 3, res.stderr
    finally:
        stop_daemon(proc, containerd_pids(exec_root))


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"""


def test_containerd_shim_runc_v2_uses_runtime(
    base_dir: Path, runtime_bin: str, busybox_tar: Path
) -> None:
    containerd = need("containerd")
    ctr = need("ctr")
    need("containerd-shim-runc-v2")
    sock = base_dir / "containerd.sock"
    config = base_dir / "config.toml"
    config.write_text(
        CONTAINERD_CONFIG.format(
            root=base_dir / "root", state=base_dir / "state", sock=sock, opt=base_dir / "opt"
        )
    )
    log = base_dir / "containerd.log"
    proc = start_in_private_ns([containerd, "--config", str(config)], log)

    def ctr_cmd(*args: str, timeout: float = 40) -> subprocess.CompletedProcess[str]:
        # ctr makes its stdio FIFOs under /run/containerd/fifo: run it in the
        # daemon's private mount namespace so they land on its tmpfs.
        return subprocess.run(
            ["nsenter", f"--mount=/proc/{proc.pid}/ns/mnt", ctr, "-a", str(sock), "-n", "test", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )  # fmt: skip

    try:
        wait_for_socket(sock, proc, log, timeout=20)
        imported = ctr_cmd("images", "import", str(busybox_tar))
        assert imported.returncode == 0, imported.stderr
        names = ctr_cmd("images", "ls", "-q").stdout.split()
        image = next(n for n in names if "busybox" in n)

        # --runc-binary sets the runc options' BinaryName of io.containerd.runc.v2.
        res = ctr_cmd(
            "run", "--rm", "--runtime", "io.containerd.runc.v2", "--runc-binary", runtime_bin,
            image, "interop-hi", "echo", "hi",
        )  # fmt: skip
        assert res.returncode == 0, (
            f"{res.stderr}\n--- containerd log ---\n{log.read_text()[-4000:]}"
        )
        assert res.stdout.strip() == "hi"

        res = ctr_cmd(
            "run", "--rm", "--runc-binary", runtime_bin, image, "interop-exit", "sh", "-c", "exit 4"
        )  # fmt: skip
        assert res.returncode == 4, res.stderr
        assert ctr_cmd("containers", "ls", "-q").stdout.split() == []
    finally:
        stop_daemon(proc, [])
