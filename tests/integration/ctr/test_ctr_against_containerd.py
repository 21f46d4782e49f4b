"""skiff-ctr against Debian's containerd 1.6: the client side of the containerd
API (DESIGN.md's boundary table: skiffd and skiff-ctr must work with the real
supervisor). Where Debian's ctr is installed, the tables are compared with its
output byte for byte."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
from ctr_daemons import BUSYBOX_OCI, BUSYBOX_TAR, SKIFF_CTR, Containerd, Registry

IMAGE = "docker.io/library/busybox:latest"
NS = "skiffctr"

pytestmark = pytest.mark.root


def skiff_ctr(
    d: Containerd, *args: str, ns: str = NS, timeout: float = 60, check: bool = True
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [*SKIFF_CTR, "-a", d.address, "-n", ns, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"skiff-ctr {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}\n"
            f"--- containerd log ---\n{d.logs()}"
        )
    return r


def real_ctr(d: Containerd, *args: str, ns: str = NS) -> str:
    return subprocess.run(
        ["ctr", "-a", d.address, "-n", ns, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


@pytest.fixture(scope="module")
def imported(containerd: Containerd) -> Containerd:
    r = skiff_ctr(containerd, "images", "import", str(BUSYBOX_TAR))
    assert f"unpacking {IMAGE}" in r.stdout
    return containerd


def test_version(containerd: Containerd) -> None:
    out = skiff_ctr(containerd, "version").stdout
    assert "Server:" in out
    assert "Version:  1.6" in out
    assert "UUID: " in out


def test_import_and_list(imported: Containerd) -> None:
    d = imported
    assert skiff_ctr(d, "images", "ls", "-q").stdout.split() == [IMAGE]
    images = skiff_ctr(d, "images", "ls").stdout
    assert IMAGE in images and "linux/amd64" in images
    content = skiff_ctr(d, "content", "ls", "-q").stdout.split()
    assert len(content) == 3  # manifest, config, one layer
    snapshots = skiff_ctr(d, "snapshots", "ls").stdout
    assert "Committed" in snapshots
    assert NS in skiff_ctr(d, "namespaces", "ls", "-q").stdout.split()
    # the image record alone keeps its blobs and snapshot: they carry containerd's gc labels
    labels = skiff_ctr(d, "content", "ls").stdout
    assert "containerd.io/gc.ref.content.config" in labels
    assert "containerd.io/gc.ref.snapshot.overlayfs" in labels


def test_tables_match_debian_ctr(imported: Containerd) -> None:
    if shutil.which("ctr") is None:
        pytest.skip("Debian's ctr is not installed")
    d = imported
    skiff_ctr(d, "containers", "create", IMAGE, "cmp1", "true")
    try:
        for args in (
            ["images", "ls"],
            ["snapshots", "ls"],
            ["containers", "ls"],
            ["namespaces", "ls"],
            ["tasks", "ls"],
        ):
            assert skiff_ctr(d, *args).stdout == real_ctr(d, *args), args
    finally:
        skiff_ctr(d, "containers", "rm", "cmp1")


def test_run_rm_true(imported: Containerd) -> None:
    d = imported
    r = skiff_ctr(d, "run", "--rm", "--runtime", "io.containerd.runc.v2", IMAGE, "t-true", "true")
    assert r.returncode == 0
    assert skiff_ctr(d, "containers", "ls", "-q").stdout.split() == []
    assert "Active" not in skiff_ctr(d, "snapshots", "ls").stdout


def test_run_output_and_exit_code(imported: Containerd) -> None:
    d = imported
    r = skiff_ctr(
        d, "run", "--rm", "--env", "GREETING=hi", IMAGE, "t-out",
        "sh", "-c", 'echo "$GREETING out"; echo err >&2; exit 5',
        check=False,
    )  # fmt: skip
    assert r.returncode == 5, r.stderr
    assert r.stdout == "hi out\n"
    assert r.stderr == "err\n"


def test_quick_image_agrees_with_the_full_resolve(imported: Containerd) -> None:
    """run reads a plain manifest without skiff.oci.image (containers.quick_image):
    the same chain ID and spec as images.get_image, through either client."""
    from skiff.containerd.client import Client, images
    from skiff.containerd.client.containers import RunOptions, generate_spec, quick_image
    from skiff.containerd.client.lean import LeanClient

    for client in (Client(imported.address, NS), LeanClient(imported.address, NS)):
        try:
            quick = quick_image(client, IMAGE)
            full = images.get_image(client, IMAGE)
            assert quick is not None, "busybox's record is a plain manifest"
            assert (quick.name, quick.chain_id) == (full.name, full.chain_id)
            for options in (RunOptions(), RunOptions(args=["true"], env=["A=1"], terminal=True)):
                assert generate_spec("c", NS, quick, options) == generate_spec(
                    "c", NS, full, options
                )
        finally:
            client.close()


def test_run_with_a_spec_beyond_the_flow_control_window(
    imported: Containerd, tmp_path: Path
) -> None:
    """160 kB of environment: run's lean HTTP/2 client must wait for
    containerd's WINDOW_UPDATEs (its windows start at 64 kB)."""
    env_file = tmp_path / "big.env"
    env_file.write_text("".join(f"V{i}={'x' * 40}{i}\n" for i in range(3000)))
    r = skiff_ctr(imported, "run", "--rm", "--env-file", str(env_file), IMAGE, "t-big",
                  "sh", "-c", "echo $V2999")  # fmt: skip
    assert r.stdout == "x" * 40 + "2999\n"


def test_detached_task_lifecycle(imported: Containerd) -> None:
    d = imported
    skiff_ctr(d, "run", "-d", IMAGE, "t-bg", "sleep", "300")
    try:
        tasks = skiff_ctr(d, "tasks", "ls").stdout
        assert "t-bg" in tasks and "RUNNING" in tasks
        assert "t-bg" in skiff_ctr(d, "containers", "ls").stdout
        info = skiff_ctr(d, "containers", "info", "t-bg").stdout
        assert '"sleep"' in info and f'"cgroupsPath": "/{NS}/t-bg"' in info
        ps = skiff_ctr(d, "tasks", "ps", "t-bg").stdout.splitlines()
        assert ps[0].split() == ["PID", "INFO"] and len(ps) == 2
        r = skiff_ctr(
            d,
            "tasks",
            "exec",
            "--exec-id",
            "e1",
            "t-bg",
            "sh",
            "-c",
            "echo in; exit 3",
            check=False,
        )
        assert (r.returncode, r.stdout) == (3, "in\n"), r.stderr
        skiff_ctr(d, "tasks", "pause", "t-bg")
        assert "PAUSED" in skiff_ctr(d, "tasks", "ls").stdout
        skiff_ctr(d, "tasks", "resume", "t-bg")
        assert "RUNNING" in skiff_ctr(d, "tasks", "ls").stdout
        assert "t-bg" in skiff_ctr(d, "tasks", "metrics", "t-bg").stdout
        # a running task cannot be deleted: containerd's FailedPrecondition, one line
        r = skiff_ctr(d, "tasks", "rm", "t-bg", check=False)
        assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
        skiff_ctr(d, "tasks", "kill", "-s", "SIGKILL", "t-bg")
        deadline = time.monotonic() + 10
        while "STOPPED" not in skiff_ctr(d, "tasks", "ls").stdout:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        skiff_ctr(d, "tasks", "rm", "t-bg")
    finally:
        skiff_ctr(d, "tasks", "rm", "-f", "t-bg", check=False)
        skiff_ctr(d, "containers", "rm", "t-bg", check=False)
    assert skiff_ctr(d, "tasks", "ls", "-q").stdout == ""


def test_events(imported: Containerd) -> None:
    d = imported
    proc = subprocess.Popen(
        [*SKIFF_CTR, "-a", d.address, "events"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # let the subscription reach the daemon
        skiff_ctr(d, "namespaces", "create", "evns", "a=b")
        skiff_ctr(d, "run", "--rm", IMAGE, "t-ev", "true")
        time.sleep(0.5)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
        skiff_ctr(d, "namespaces", "rm", "evns", check=False)
    lines = out.splitlines()
    assert any(" /namespaces/create " in x and '"name":"evns"' in x for x in lines), (out, err)
    topics = [x.split()[5] for x in lines if f" {NS} " in x]
    for topic in (
        "/containers/create",
        "/tasks/create",
        "/tasks/start",
        "/tasks/exit",
        "/tasks/delete",
        "/containers/delete",
    ):
        assert topic in topics, (topic, out)


def test_pull_from_local_registry(containerd: Containerd, registry: Registry) -> None:
    if shutil.which("skopeo") is None or not BUSYBOX_OCI.exists():
        pytest.skip("skopeo or build/images/busybox-oci is missing")
    d = containerd
    remote = f"{registry.host}/library/busybox:latest"
    subprocess.run(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{BUSYBOX_OCI}:latest", f"docker://{remote}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    r = skiff_ctr(d, "images", "pull", "--plain-http", remote, ns="pulled")
    assert "done:" in r.stdout
    assert skiff_ctr(d, "images", "ls", "-q", ns="pulled").stdout.split() == [remote]
    r = skiff_ctr(d, "run", "--rm", remote, "t-pulled", "echo", "pulled", ns="pulled")
    assert r.stdout == "pulled\n"
    # a tag the registry lacks
    r = skiff_ctr(
        d,
        "images",
        "pull",
        "--plain-http",
        f"{registry.host}/library/busybox:nope",
        ns="pulled",
        check=False,
    )
    assert r.returncode == 1 and "not found" in r.stderr.lower(), r.stderr
    skiff_ctr(d, "images", "rm", remote, ns="pulled")


def _one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("skiff-ctr: "), r.stderr
    for n in needles:
        assert n in lines[0], (n, r.stderr)


def test_bad_input(imported: Containerd) -> None:
    d = imported
    _one_line_error(
        skiff_ctr(d, "containers", "info", "nosuch", ns="nosuchns", check=False), "not found"
    )
    _one_line_error(skiff_ctr(d, "containers", "ls", ns="bad/ns", check=False), "invalid argument")
    _one_line_error(
        skiff_ctr(d, "run", "--rm", "docker.io/library/missing:latest", "t-miss", "true", check=False),
        "missing:latest", "not found",
    )  # fmt: skip
    skiff_ctr(d, "containers", "create", IMAGE, "dup", "true")
    try:
        _one_line_error(
            skiff_ctr(d, "containers", "create", IMAGE, "dup", "true", check=False),
            '"dup"', "already exists",
        )  # fmt: skip
        _one_line_error(
            skiff_ctr(d, "run", "--rm", IMAGE, "dup", "true", check=False),
            '"dup"', "already exists",
        )  # fmt: skip
    finally:
        skiff_ctr(d, "containers", "rm", "dup")
    _one_line_error(skiff_ctr(d, "snapshots", "rm", "nosnap", check=False), "not found")
    _one_line_error(skiff_ctr(d, "tasks", "kill", "nosuch", check=False), "not found")


def test_export_round_trip(imported: Containerd, tmp_path: Path) -> None:
    d = imported
    out = tmp_path / "busybox-export.tar"
    skiff_ctr(d, "images", "export", str(out), IMAGE)
    skiff_ctr(d, "images", "import", "--no-unpack", str(out), ns="reimport")
    assert skiff_ctr(d, "images", "ls", "-q", ns="reimport").stdout.split() == [IMAGE]
    # no snapshot chain in this namespace: run's lean client hands the unpack
    # (diff Apply, Commit, content labels) to the full gRPC client
    assert "Committed" not in skiff_ctr(d, "snapshots", "ls", ns="reimport").stdout
    r = skiff_ctr(d, "run", "--rm", IMAGE, "t-unpack", "echo", "unpacked", ns="reimport")
    assert r.stdout == "unpacked\n"
    assert "Committed" in skiff_ctr(d, "snapshots", "ls", ns="reimport").stdout
    skiff_ctr(d, "images", "rm", IMAGE, ns="reimport")
