"""Import and export: docker-save archives and OCI image layouts, both
directions; a save of an imported image gives back the same digests."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from skiff.containerd.content import ContentStore
from skiff.containerd.snapshots import Snapshotter
from skiff.image import archive
from skiff.image.unpack import unpack
from skiff.oci.image import Image, Manifest

BUSYBOX_TAR = Path(__file__).resolve().parents[3] / "build" / "images" / "busybox.tar"


def _digests(store: ContentStore) -> set[str]:
    return {str(i.digest) for i in store.walk()}


def test_docker_save_round_trip(tmp: Path) -> None:
    if not BUSYBOX_TAR.exists():
        pytest.skip("build/images/busybox.tar missing: run `make images`")
    a = ContentStore(str(tmp / "a"))
    with open(BUSYBOX_TAR, "rb") as f:
        (img,) = archive.import_docker_archive(a, f, str(tmp))
    assert img.name == "docker.io/library/busybox:latest"
    saved = io.BytesIO()
    archive.export_images(a, [(img.name, img.target)], saved)
    b = ContentStore(str(tmp / "b"))
    saved.seek(0)
    (again,) = archive.import_docker_archive(b, saved, str(tmp))
    assert again.target.digest == img.target.digest
    assert _digests(b) == _digests(a)
    resaved = io.BytesIO()
    archive.export_images(b, [(again.name, again.target)], resaved)
    assert resaved.getvalue() == saved.getvalue()
    # what docker load reads
    saved.seek(0)
    with tarfile.open(fileobj=saved) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        repos = json.load(tar.extractfile("repositories"))  # type: ignore[arg-type]
    assert manifest[0]["RepoTags"] == ["busybox:latest"]
    assert list(repos) == ["busybox"]


def test_classic_docker_save_without_oci_parts(
    tmp: Path, busybox_oci: Path, snapshotter: Snapshotter
) -> None:
    """An archive from an older docker: `<id>/layer.tar` files (uncompressed),
    `<config>.json`, manifest.json and repositories only."""
    src = ContentStore(str(tmp / "src"))
    (img,) = archive.import_oci_layout(src, str(busybox_oci))
    man = Manifest.from_json(src.read_all(img.target.digest))
    config_bytes = src.read_all(man.config.digest)
    layer_tar = gzip.decompress(src.read_all(man.layers[0].digest))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in [
            (f"{man.config.digest.encoded}.json", config_bytes),
            ("abc123/layer.tar", layer_tar),
            ("abc123/VERSION", b"1.0"),
            (
                "manifest.json",
                json.dumps(
                    [
                        {
                            "Config": f"{man.config.digest.encoded}.json",
                            "RepoTags": ["example.com/bb:old"],
                            "Layers": ["abc123/layer.tar"],
                        }
                    ]
                ).encode(),
            ),
            ("repositories", b'{"example.com/bb":{"old":"abc123"}}'),
        ]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    store = ContentStore(str(tmp / "dst"))
    buf.seek(0)
    (got,) = archive.import_docker_archive(store, buf, str(tmp))
    assert got.name == "example.com/bb:old"
    new_man = Manifest.from_json(store.read_all(got.target.digest))
    assert new_man.config.digest == man.config.digest  # the image ID is kept
    cfg = Image.from_json(store.read_all(new_man.config.digest))
    top = unpack(store, snapshotter, new_man, cfg)
    assert str(top) == str(cfg.rootfs.diff_ids[0])
    # and saved again, the same digests come back
    out = io.BytesIO()
    archive.export_images(store, [(got.name, got.target)], out)
    out.seek(0)
    again = ContentStore(str(tmp / "again"))
    (back,) = archive.import_docker_archive(again, out, str(tmp))
    assert back.target.digest == got.target.digest and _digests(again) == _digests(store)


def test_oci_layout_round_trip_checked_by_skopeo(tmp: Path, busybox_oci: Path) -> None:
    a = ContentStore(str(tmp / "a"))
    (img,) = archive.import_oci_layout(a, str(busybox_oci))
    layout = tmp / "layout"
    archive.export_oci_layout(a, [(img.name, img.target)], str(layout))
    b = ContentStore(str(tmp / "b"))
    (again,) = archive.import_oci_layout(b, str(layout))
    assert again.target.digest == img.target.digest and again.name == img.name
    assert _digests(a) == _digests(b)
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo not installed: cannot check the layout with a real reader")
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{layout}:latest"], check=True, capture_output=True
    ).stdout
    assert raw == a.read_all(img.target.digest)


def test_corrupt_layout_blob_is_refused(tmp: Path, busybox_oci: Path) -> None:
    layout = tmp / "layout"
    shutil.copytree(busybox_oci, layout)
    index = json.loads((layout / "index.json").read_text())
    man = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]).read_text())
    layer = layout / "blobs/sha256" / man["layers"][0]["digest"][7:]
    data = bytearray(layer.read_bytes())
    data[100] ^= 0xFF
    layer.write_bytes(bytes(data))
    store = ContentStore(str(tmp / "s"))
    from skiff.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="unexpected digest"):
        archive.import_oci_layout(store, str(layout))
    assert man["layers"][0]["digest"] not in _digests(store)
