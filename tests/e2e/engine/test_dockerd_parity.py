"""skiffd and Debian's dockerd give the docker CLI the same answers: each scenario
runs against both daemons (dockerd on temporary roots, once per module, in a
network namespace of its own), so the expectations are dockerd's own behaviour.
Where the two cannot agree (runtime texts), the test runs on skiffd alone."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_daemons import BUSYBOX_TAR, Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_daemons import dockerd as start_dockerd


class Docker:
    """The docker CLI pointed at one daemon."""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.env = env

    def docker(
        self, *args: str, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{self.kind}: docker {' '.join(args)} failed ({res.returncode}):\n"
                f"{res.stdout}\n{res.stderr}"
            )
        return res

    def inspect(self, what: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.docker("inspect", what).stdout)[0]
        return out


@pytest.fixture(scope="module")
def dockerd_cli() -> Iterator[Docker]:
    if shutil.which("dockerd") is None:
        pytest.skip("Debian's dockerd (docker.io) is not installed: nothing to compare with")
    with start_dockerd(netns=True) as d:
        yield Docker("dockerd", d.env(d.base / "docker-cli"))


@pytest.fixture(params=["skiffd", "dockerd"])
def daemon(request: pytest.FixtureRequest, engine: Engine) -> Docker:
    if request.param == "skiffd":
        return Docker("skiffd", engine.env)
    return request.getfixturevalue("dockerd_cli")  # type: ignore[no-any-return]


def uid() -> str:
    return uuid.uuid4().hex[:10]


def image_tar(path: Path, tag: str | None, label: str, extra: bytes = b"") -> None:
    """A docker-save archive of busybox with a label (so a new image ID) sharing
    busybox's layer; with `extra`, a second layer holding that many bytes."""
    with tarfile.open(BUSYBOX_TAR) as src:
        manifest = json.load(src.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(src.extractfile(manifest["Config"]))  # type: ignore[arg-type]
        base_layer = src.extractfile(manifest["Layers"][0]).read()  # type: ignore[union-attr]
    config["config"]["Labels"] = {**(config["config"].get("Labels") or {}), "p5": label}
    config["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    layers = [(manifest["Layers"][0], base_layer)]
    if extra:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            info = tarfile.TarInfo("p5-extra")
            info.size = len(extra)
            t.addfile(info, io.BytesIO(extra))
        raw = buf.getvalue()
        config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
        layers.append((f"blobs/sha256/{hashlib.sha256(raw).hexdigest()}", raw))
    cfg = json.dumps(config).encode()
    cfg_name = f"blobs/sha256/{hashlib.sha256(cfg).hexdigest()}"
    entry = {"Config": cfg_name, "Layers": [n for n, _ in layers], "RepoTags": [tag] if tag else []}
    with tarfile.open(path, "w") as out:
        for name, data in [
            *layers,
            (cfg_name, cfg),
            ("manifest.json", json.dumps([entry]).encode()),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def load(d: Docker, tag: str | None, extra: bytes = b"") -> str:
    """Load a fresh busybox-based image; its ID."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.tar"
        image_tar(path, tag, uid(), extra)
        out = d.docker("load", "-i", str(path)).stdout
    if tag:
        return str(d.inspect(tag)["Id"])
    m = re.search(r"Loaded image ID: (sha256:[0-9a-f]{64})", out)
    assert m, out
    return m.group(1)


def human_bytes(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)\s*(B|kB|MB|GB)", text.strip())
    assert m, text
    return float(m.group(1)) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)]


# -- 1. docker ps -l / -n: the newest containers, stopped ones included ------------


def test_ps_limit_counts_stopped_containers(daemon: Docker) -> None:
    label = f"p5={uid()}"
    up, done = "p5up" + uid(), "p5done" + uid()
    try:
        daemon.docker("run", "-d", "--label", label, "--name", up, "busybox", "sleep", "300")
        daemon.docker("run", "--label", label, "--name", done, "busybox", "true", timeout=30)
        fmt = ["--filter", f"label={label}", "--format", "{{.Names}}"]
        assert daemon.docker("ps", *fmt).stdout.split() == [up]
        assert daemon.docker("ps", "-l", *fmt).stdout.split() == [done]
        assert daemon.docker("ps", "-n", "2", *fmt).stdout.split() == [done, up]
        assert daemon.docker("ps", "-n", "1", "-a", *fmt).stdout.split() == [done]
        # before/since do not bring stopped containers in by themselves
        assert daemon.docker("ps", "--filter", f"since={up}", *fmt).stdout.split() == []
        assert daemon.docker("ps", "-a", "--filter", f"since={up}", *fmt).stdout.split() == [done]
    finally:
        daemon.docker("rm", "-f", up, done, check=False)


# -- 2. docker rmi of an image a container uses ------------------------------------


def test_rmi_of_the_tag_of_a_used_image(daemon: Docker) -> None:
    tag = f"p5img{uid()}:v1"
    iid = load(daemon, tag)
    n = "p5rmi" + uid()
    try:
        cid = daemon.docker("run", "-d", "--name", n, tag, "sleep", "300").stdout.strip()
        res = daemon.docker("rmi", tag, check=False)
        assert res.returncode == 1 and res.stderr.strip() == (
            f'Error response from daemon: conflict: unable to remove repository reference "{tag}"'
            f" (must force) - container {cid[:12]} is using its referenced image {iid[7:19]}"
        ), res
        # one of several tags may go
        other = f"p5img{uid()}:v2"
        daemon.docker("tag", tag, other)
        assert daemon.docker("rmi", other).stdout.strip() == f"Untagged: {other}"
        # by ID, a running container's image cannot go even with force
        for args in (["rmi", iid[7:19]], ["rmi", "-f", iid[7:19]]):
            res = daemon.docker(*args, check=False)
            assert res.returncode == 1 and res.stderr.strip() == (
                f"Error response from daemon: conflict: unable to delete {iid[7:19]} "
                f"(cannot be forced) - image is being used by running container {cid[:12]}"
            ), res
        # forced by name: the tag goes (skiffd adds the untag of its digest, which its
        # RepoDigests shows), the image stays, nameless
        assert daemon.docker("rmi", "-f", tag).stdout.splitlines()[0] == f"Untagged: {tag}"
        assert daemon.inspect(iid)["RepoTags"] == []
        assert daemon.inspect(n)["Image"] == iid
    finally:
        daemon.docker("rm", "-f", n, check=False)
        daemon.docker("rmi", "-f", iid, check=False)


def test_rmi_of_a_stopped_containers_image_by_name_needs_force(daemon: Docker) -> None:
    tag = f"p5img{uid()}:v1"
    iid = load(daemon, tag)
    n = "p5rmi" + uid()
    try:
        cid = daemon.docker("create", "--name", n, tag, "true").stdout.strip()
        res = daemon.docker("rmi", tag, check=False)
        assert res.returncode == 1 and f"container {cid[:12]} is using its referenced" in (
            res.stderr
        ), res
        res = daemon.docker("rmi", iid[7:19], check=False)
        assert res.returncode == 1 and res.stderr.strip() == (
            f"Error response from daemon: conflict: unable to delete {iid[7:19]} "
            f"(must be forced) - image is being used by stopped container {cid[:12]}"
        ), res
        # forced: dockerd deletes the image too, skiffd keeps it nameless for the container
        assert daemon.docker("rmi", "-f", tag).stdout.splitlines()[0] == f"Untagged: {tag}"
    finally:
        daemon.docker("rm", "-f", n, check=False)
        daemon.docker("rmi", "-f", iid, check=False)


# -- 3. docker update / run --memory checked, a refused update not kept ------------


def test_memory_limits_checked_at_update_and_run(daemon: Docker) -> None:
    n = "p5upd" + uid()
    try:
        daemon.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
        res = daemon.docker("update", "--memory", "1k", n, check=False)
        assert res.returncode == 1, res
        assert (
            res.stderr.strip() == "Error response from daemon: Minimum memory limit allowed is 6MB"
        )
        res = daemon.docker("update", "--memory", "20m", "--memory-swap", "10m", n, check=False)
        assert res.returncode == 1 and res.stderr.strip() == (
            "Error response from daemon: Minimum memoryswap limit should be larger than "
            "memory limit, see usage"
        ), res
        res = daemon.docker("update", "--cpus", "1000", n, check=False)
        assert res.returncode == 1 and "Range of CPUs is from 0.01 to" in res.stderr, res
        host = daemon.inspect(n)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"], host["NanoCpus"]) == (0, 0, 0)
        daemon.docker("update", "--memory", "10m", "--memory-swap", "20m", n)
        # an update of something else leaves the limits (the CLI sends them as 0)
        daemon.docker("update", "--restart", "on-failure:2", n)
        host = daemon.inspect(n)["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (10 << 20, 20 << 20), host
        assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
        res = daemon.docker("run", "--rm", "--memory", "1k", "busybox", "true", check=False)
        assert res.returncode == 125 and "Minimum memory limit allowed is 6MB" in res.stderr, res
    finally:
        daemon.docker("rm", "-f", n, check=False)


def test_update_the_runtime_refuses_is_not_kept(engine: Engine) -> None:
    n = "p5upd" + uid()
    try:
        # 20 MB of tmpfs pages charged to the container: without swap, a lower
        # limit cannot be reached and the kernel refuses it (EBUSY)
        engine.docker(
            "run", "-d", "--name", n, "busybox", "sh", "-c",
            "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; touch /ready; sleep 300",
        )  # fmt: skip
        for _ in range(100):
            if engine.docker("exec", n, "test", "-e", "/ready", check=False).returncode == 0:
                break
            time.sleep(0.1)
        res = engine.docker("update", "--memory", "8m", n, check=False)
        if res.returncode == 0:
            pytest.skip("the kernel reclaimed the container's memory (swap?): no refusal to test")
        assert "Cannot update container" in res.stderr, res
        assert engine.docker("inspect", "-f", "{{.HostConfig.Memory}}", n).stdout.strip() == "0"
        # and the next update is not haunted by the refused value
        engine.docker("update", "--memory", "100m", "--memory-swap", "200m", n)
        host = json.loads(engine.docker("inspect", n).stdout)[0]["HostConfig"]
        assert (host["Memory"], host["MemorySwap"]) == (100 << 20, 200 << 20)
    finally:
        engine.docker("rm", "-f", n, check=False)


# -- 4. image prune counts only what it frees -----------------------------------------


def test_image_prune_counts_only_freed_layers(daemon: Docker) -> None:
    label = uid()
    extra = os.urandom(300_000)
    iid = load(daemon, None, extra)  # dangling, busybox's layer + 300 kB of its own
    try:
        out = daemon.docker("image", "prune", "-f", "--filter", f"label=p5={label}").stdout
        assert "Total reclaimed space: 0B" in out  # no image has that label: nothing
        p5 = daemon.inspect(iid)["Config"]["Labels"]["p5"]
        out = daemon.docker("image", "prune", "-f", "--filter", f"label=p5={p5}").stdout
        assert iid in out, out
        space = human_bytes(out.rsplit("Total reclaimed space:", 1)[1])
        # the own layer, not busybox's (about 2 MB, still held by busybox)
        assert 300_000 <= space < 700_000, out
    finally:
        daemon.docker("rmi", "-f", iid, check=False)


# -- 5. rename conflicts, inspect's defaults ------------------------------------------


def test_rename_errors_say_where_they_failed(daemon: Docker) -> None:
    a, b = "p5ren" + uid(), "p5ren" + uid()
    try:
        daemon.docker("create", "--name", a, "busybox", "true")
        bid = daemon.docker("create", "--name", b, "busybox", "true").stdout.strip()
        res = daemon.docker("rename", a, b, check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[0] == (
            f"Error response from daemon: Error when allocating new name: Conflict. The container "
            f'name "/{b}" is already in use by container "{bid}". You have to remove (or rename) '
            "that container to be able to reuse that name."
        ), res
        res = daemon.docker("rename", a, "bad name", check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[0] == (
            "Error response from daemon: Error when allocating new name: Invalid container name "
            "(/bad name), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        ), res
        res = daemon.docker("rename", a, a, check=False)
        assert res.returncode == 1 and res.stderr.splitlines()[0] == (
            "Error response from daemon: Renaming a container with the same name as its "
            "current name"
        ), res
    finally:
        daemon.docker("rm", "-f", a, b, check=False)


def test_inspect_fills_hostconfig_defaults(daemon: Docker) -> None:
    n = "p5ins" + uid()
    try:
        daemon.docker("create", "--name", n, "busybox", "true")
        info = daemon.inspect(n)
        host = info["HostConfig"]
        assert host["CgroupnsMode"] in ("host", "private") and host["IpcMode"] == "private"
        assert host["PidsLimit"] is None
        assert "/proc/kcore" in host["MaskedPaths"] and "/proc/sys" in host["ReadonlyPaths"]
        for key in ("Init", "Mounts", "Tmpfs"):
            assert key not in host, key
        assert info["Config"]["Volumes"] is None
        daemon.docker("rm", n)
        daemon.docker(
            "create", "--name", n, "--privileged", "--pids-limit", "-1", "busybox", "true"
        )
        host = daemon.inspect(n)["HostConfig"]
        assert host["MaskedPaths"] is None and host["ReadonlyPaths"] is None
        assert host["PidsLimit"] is None
    finally:
        daemon.docker("rm", "-f", n, check=False)


def test_pause_unpause_kill_refusals(daemon: Docker) -> None:
    up, idle = "p5pz" + uid(), "p5pz" + uid()
    try:
        daemon.docker("run", "-d", "--name", up, "busybox", "sleep", "300")
        iid = daemon.docker("create", "--name", idle, "busybox", "true").stdout.strip()
        uid_ = daemon.inspect(up)["Id"]
        err = "Error response from daemon: "
        for args, text in (
            (["pause", idle], f"Container {iid} is not running"),
            (["unpause", up], f"Container {uid_} is not paused"),
            (["kill", idle], f"Cannot kill container: {idle}: Container {iid} is not running"),
        ):
            res = daemon.docker(*args, check=False)
            assert res.returncode == 1 and res.stderr.strip() == err + text, res
        daemon.docker("pause", up)
        res = daemon.docker("pause", up, check=False)
        assert res.stderr.strip() == err + f"Container {uid_} is already paused", res
    finally:
        daemon.docker("rm", "-f", up, idle, check=False)


def test_rm_of_a_running_or_paused_container_without_force(engine: Engine) -> None:
    """The texts of API 1.45's dockerd (moby 25's delete.go); Debian's dockerd 20.10
    still says "You cannot remove a running container", so skiffd alone here."""
    n = "p5rm" + uid()
    try:
        engine.docker("run", "-d", "--name", n, "busybox", "sleep", "300")
        res = engine.docker("rm", n, check=False)
        assert res.returncode == 1 and res.stderr.strip() == (
            f'Error response from daemon: cannot remove container "/{n}": container is running:'
            " stop the container before removing or force remove"
        ), res
        engine.docker("pause", n)
        res = engine.docker("rm", n, check=False)
        assert res.returncode == 1 and res.stderr.strip() == (
            f'Error response from daemon: cannot remove container "/{n}": container is paused'
            " and must be unpaused first"
        ), res
    finally:
        engine.docker("rm", "-f", n, check=False)


def test_rm_of_a_restarting_container_without_force(engine: Engine) -> None:
    n = "p5rs" + uid()
    try:
        engine.docker("run", "-d", "--restart", "always", "--name", n, "busybox", "false")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            st = engine.docker("inspect", "-f", "{{.State.Status}}", n).stdout.strip()
            if st == "restarting":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"{n} never seen restarting")
        res = engine.docker("rm", n, check=False)
        if "container is running" in res.stderr:
            pytest.skip("the back-off ended before the rm: not restarting any more")
        assert res.returncode == 1 and res.stderr.strip() == (
            f'Error response from daemon: cannot remove container "/{n}": container is '
            "restarting: stop the container before removing or force remove"
        ), res
    finally:
        engine.docker("rm", "-f", n, check=False)
