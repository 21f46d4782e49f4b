"""Pull and push against Debian's docker-registry on 127.0.0.1, open and
with htpasswd basic auth; then run a container from what was pulled."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from cutting_proxy import cutting_proxy
from image_factory import image_with_layers, index_of, random_image
from registry_server import Registry
from tar_layers import entry, make_tar

from skiff.containerd.content import ContentStore
from skiff.containerd.snapshots import OverlaySnapshotter, Snapshotter, mount_all, unmount
from skiff.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from skiff.image import archive
from skiff.image.pull import pull, push
from skiff.image.registry import (
    Credentials,
    Progress,
    RegistryClient,
    RegistryOptions,
    Unauthorized,
)
from skiff.oci.platform import Platform

NO_CONFIG = "/nonexistent/config.json"  # never the host's ~/.docker


def client(**kw: object) -> RegistryClient:
    kw.setdefault("docker_config", NO_CONFIG)
    return RegistryClient(RegistryOptions(**kw))  # type: ignore[arg-type]


def _busybox(store: ContentStore, busybox_oci: Path) -> archive.ImportedImage:
    return archive.import_oci_layout(store, str(busybox_oci))[0]


def _runtime() -> str:
    name = os.environ.get("RUNTIME", "runc")
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"runtime {name!r} not found (set RUNTIME)")
    return path


def _run_container(tmp: Path, sn: Snapshotter, chain_id: str, args: list[str]) -> str:
    runtime = _runtime()
    bundle = tmp / "bundle"
    rootfs = bundle / "rootfs"
    rootfs.mkdir(parents=True)
    key = f"container-{uuid.uuid4().hex[:8]}"
    mount_all(sn.prepare(key, chain_id), str(rootfs))
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
            "cwd": "/",
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "skiff-pulled",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "mode=755"],
            },
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")]},
    }
    (bundle / "config.json").write_text(json.dumps(config))
    cid = f"skiff-img-{uuid.uuid4().hex[:10]}"
    state = tmp / "runtime-state"
    try:
        proc = subprocess.run(
            [runtime, "--root", str(state), "run", "--bundle", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout
    finally:
        subprocess.run([runtime, "--root", str(state), "delete", "-f", cid], capture_output=True)
        unmount(str(rootfs))
        sn.remove(key)


@pytest.mark.parametrize("auth", [False, True], ids=["open", "htpasswd"])
def test_push_pull_unpack_run(
    tmp: Path, busybox_oci: Path, auth: bool, registry: Registry, auth_registry: Registry
) -> None:
    reg = auth_registry if auth else registry
    creds = {reg.host: Credentials(reg.user, reg.password)} if auth else {}
    src = ContentStore(str(tmp / "src"))
    img = _busybox(src, busybox_oci)
    c = client(credentials=creds)
    events: list[Progress] = []
    pushed = push(c, f"{reg.host}/skiff/busybox:v1", src, img.target, progress=events.append)
    assert pushed == img.target.digest
    assert {e.status for e in events} >= {"uploading", "uploaded"}

    # pushing again uploads nothing: the registry has every blob (HEAD)
    events.clear()
    push(c, f"{reg.host}/skiff/busybox:v1", src, img.target, progress=events.append)
    assert {e.status for e in events if e.status != "uploading"} == {"exists"}
    # to another repository: blobs are mounted across repositories
    events.clear()
    push(
        c,
        f"{reg.host}/other/bb:v2",
        src,
        img.target,
        mount_from=["skiff/busybox"],
        progress=events.append,
    )
    assert {e.status for e in events if e.status != "uploading"} == {"mounted"}

    dst = ContentStore(str(tmp / "dst"))
    sn = OverlaySnapshotter(str(tmp / "snapshots"))
    try:
        events.clear()
        result = pull(
            c, f"{reg.host}/skiff/busybox:v1", dst, snapshotter=sn, progress=events.append
        )
        assert result.manifest.digest == img.target.digest
        assert {i.digest for i in dst.walk()} == {i.digest for i in src.walk()}
        layer_events = [e for e in events if e.kind == "layer"]
        assert layer_events and layer_events[-1].done == layer_events[-1].total
        assert result.chain_id is not None
        out = _run_container(
            tmp, sn, str(result.chain_id), ["/bin/sh", "-c", "echo hello from $(hostname)"]
        )
        assert out.strip() == "hello from skiff-pulled"

        # by digest, and the pull of what is there already fetches nothing
        by_digest = pull(c, f"{reg.host}/other/bb@{img.target.digest}", dst)
        assert by_digest.manifest.digest == img.target.digest
    finally:
        sn.close()


def test_auth_required_and_docker_config(
    tmp: Path, busybox_oci: Path, auth_registry: Registry
) -> None:
    reg = auth_registry
    src = ContentStore(str(tmp / "src"))
    img = _busybox(src, busybox_oci)
    with pytest.raises(Unauthorized):
        push(client(), f"{reg.host}/a/b:1", src, img.target)
    with pytest.raises(Unauthorized):
        push(
            client(credentials={reg.host: Credentials(reg.user, "wrong")}),
            f"{reg.host}/a/b:1",
            src,
            img.target,
        )
    config = tmp / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(f"{reg.user}:{reg.password}".encode()).decode()
    config.write_text(json.dumps({"auths": {reg.host: {"auth": auth}}}))
    c = RegistryClient(RegistryOptions(docker_config=str(config)))
    push(c, f"{reg.host}/a/b:1", src, img.target)
    assert (
        pull(c, f"{reg.host}/a/b:1", ContentStore(str(tmp / "dst"))).manifest.digest
        == img.target.digest
    )


def test_multi_platform_index_picks_amd64(tmp: Path, busybox_oci: Path, registry: Registry) -> None:
    src = ContentStore(str(tmp / "src"))
    amd64 = _busybox(src, busybox_oci).target
    arm64 = image_with_layers(
        src, [make_tar(entry("arm", data=b"arm64"))], arch="arm64", variant="v8"
    )
    armv7 = image_with_layers(
        src, [make_tar(entry("arm", data=b"armv7"))], arch="arm", variant="v7"
    )
    # amd64 listed last so that "the first entry" would be wrong
    index = index_of(src, [arm64, armv7, amd64])
    c = client()
    push(c, f"{registry.host}/multi/img:latest", src, index)

    got = pull(c, f"{registry.host}/multi/img", ContentStore(str(tmp / "d1")))
    assert got.target.digest == index.digest
    assert got.manifest.digest == amd64.digest
    assert got.config.architecture == "amd64"
    arm = pull(
        c,
        f"{registry.host}/multi/img",
        ContentStore(str(tmp / "d2")),
        platform=Platform.parse("linux/arm64"),
    )
    assert arm.manifest.digest == arm64.digest
    with pytest.raises(NotFound, match="no image for platform linux/s390x"):
        pull(
            c,
            f"{registry.host}/multi/img",
            ContentStore(str(tmp / "d3")),
            platform=Platform.parse("linux/s390x"),
        )


def test_interrupted_pull_resumes(tmp: Path, registry: Registry) -> None:
    src = ContentStore(str(tmp / "src"))
    img = random_image(src, 8 << 20)
    push(client(), f"{registry.host}/big/img:1", src, img)
    layer = json.loads(src.read_all(img.digest))["layers"][0]

    with cutting_proxy(registry.host, cut_after=3 << 20) as proxy:
        ref = f"{proxy.host}/big/img:1"
        # 1. the connection dies mid-layer and no retry is allowed: the pull
        #    fails, keeping the bytes it had in the ingest
        proxy.cuts_left = 1
        dst = ContentStore(str(tmp / "dst"))
        sn = OverlaySnapshotter(str(tmp / "snap"))
        try:
            with pytest.raises(Unavailable, match="connection closed"):
                pull(client(retries=0), ref, dst, snapshotter=sn)
            (status,) = dst.statuses()
            assert 0 < status.offset < layer["size"]
            assert not dst.exists(layer["digest"])
            assert list(sn.walk()) == []
            # 2. the next pull continues from that offset with an HTTP range
            result = pull(client(), ref, dst, snapshotter=sn)
            assert f"bytes={status.offset}-" in proxy.ranges()
            assert dst.exists(layer["digest"]) and dst.statuses() == []
            assert [s.name for s in sn.walk()] == [str(result.chain_id)]
        finally:
            sn.close()

        # 3. within one pull: the cut is retried and resumed in place
        proxy.cuts_left = 1
        proxy.requests.clear()
        events: list[Progress] = []
        fresh = ContentStore(str(tmp / "fresh"))
        pull(client(), ref, fresh, progress=events.append)
        assert "retrying" in {e.status for e in events}
        assert any(r.startswith("bytes=") and r != "bytes=0-" for r in proxy.ranges())
        assert fresh.exists(layer["digest"])


def test_corrupt_blob_in_registry_commits_nothing(tmp: Path, registry: Registry) -> None:
    src = ContentStore(str(tmp / "src"))
    img = random_image(src, 1 << 20)
    push(client(), f"{registry.host}/bad/img:1", src, img)
    layer = json.loads(src.read_all(img.digest))["layers"][0]
    hexd = layer["digest"].split(":")[1]
    data_path = (
        Path(registry.root) / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    )
    with open(data_path, "r+b") as f:
        f.seek(layer["size"] // 2)
        f.write(b"\xff" * 64)  # same size, wrong bytes
    dst = ContentStore(str(tmp / "dst"))
    sn = OverlaySnapshotter(str(tmp / "snap"))
    try:
        with pytest.raises((FailedPrecondition, InvalidArgument)):
            pull(client(), f"{registry.host}/bad/img:1", dst, snapshotter=sn)
        assert not dst.exists(layer["digest"])
        assert dst.statuses() == []
        assert list(sn.walk()) == []
    finally:
        sn.close()


def test_docker_io_mirror(tmp: Path, busybox_oci: Path, registry: Registry) -> None:
    src = ContentStore(str(tmp / "src"))
    img = _busybox(src, busybox_oci)
    push(client(), f"{registry.host}/library/busybox:latest", src, img.target)
    c = client(mirrors={"docker.io": [f"http://{registry.host}"]})
    got = pull(c, "busybox", ContentStore(str(tmp / "dst")))
    assert got.name == "docker.io/library/busybox:latest"
    assert got.manifest.digest == img.target.digest


class _HugeManifest(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/v2/":
            self.send_response(200)
            self.end_headers()
            return
        body = b'{"schemaVersion":2,"layers":[' + b" " * (5 << 20) + b"]}"
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_oversized_manifest_is_refused(tmp: Path) -> None:
    # docker-registry itself refuses to store a manifest over 4 MiB, so a
    # tiny hostile server on 127.0.0.1 plays the registry here
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HugeManifest)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(InvalidArgument, match="too large"):
            pull(client(), f"{host}/evil/img:1", ContentStore(str(tmp / "dst")))
        assert os.listdir(tmp / "dst" / "blobs" / "sha256") == []
    finally:
        server.shutdown()
        server.server_close()


def test_pull_unpacks_a_layer_chain_while_downloading(tmp: Path, registry: Registry) -> None:
    """Five layers, downloaded three at a time and applied in order on an
    overlay chain: whiteouts and opaque directories of upper layers win."""
    src = ContentStore(str(tmp / "src"))
    layers = [
        make_tar(
            entry("etc", "dir"), entry("etc/a", data=b"a"), entry("big", data=os.urandom(2 << 20))
        ),
        make_tar(entry("etc/b", data=b"b"), entry("opt", "dir"), entry("opt/old", data=b"o")),
        make_tar(entry("etc/.wh.a"), entry("big", data=b"small now")),
        make_tar(entry("opt", "dir"), entry("opt/.wh..wh..opq"), entry("opt/new", data=b"n")),
        make_tar(entry("etc/c", data=b"c")),
    ]
    img = image_with_layers(src, layers)
    push(client(), f"{registry.host}/chain/img:1", src, img)
    sn = OverlaySnapshotter(str(tmp / "snap"))
    try:
        result = pull(
            client(concurrency=3),
            f"{registry.host}/chain/img:1",
            ContentStore(str(tmp / "d")),
            snapshotter=sn,
        )
        assert len(list(sn.walk())) == 5
        view = sn.view("check", str(result.chain_id))
        from skiff.image.unpack import mounted

        with mounted(view) as root:
            assert sorted(os.listdir(os.path.join(root, "etc"))) == ["b", "c"]
            assert os.listdir(os.path.join(root, "opt")) == ["new"]
            with open(os.path.join(root, "big"), "rb") as f:
                assert f.read() == b"small now"
        sn.remove("check")
    finally:
        sn.close()
