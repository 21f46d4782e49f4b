"""Build the offline busybox test image that every test and `make run` use.

The image is made from Debian's busybox-static: busybox with its applets as
hard links in /bin, /etc/passwd and /etc/group (root, nobody, a uid-1000
user) and /tmp 1777, as one gzip layer. It is written twice:

- ``<out>/busybox-oci/``: an OCI image layout (oci-layout, index.json, blobs)
- ``<out>/busybox.tar``: the same blobs plus ``manifest.json`` and
  ``repositories``, the ``docker save`` shape that docker 25+ writes, which
  ``docker load`` and ``ctr images import`` both read

Everything is deterministic (fixed times, owners and gzip header), so the
digests are the same on every machine with the same busybox.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

BUSYBOX = "/bin/busybox"
EPOCH = 1_700_000_000  # fixed mtime for every entry: same inputs, same digests
CREATED = "2023-11-14T22:13:20Z"
REF = "docker.io/library/busybox:latest"

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/home:/bin/false\n"
    "user:x:1000:1000:user:/home/user:/bin/sh\n"
)
GROUP = "root:x:0:\nnobody:x:65534:\nuser:x:1000:\n"


def applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True)
    names = sorted({line.strip() for line in out.stdout.splitlines() if line.strip()})
    return [n for n in names if n != "busybox" and "/" not in n]


def build_layer(busybox: str) -> bytes:
    """Return the uncompressed layer tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755, uid: int = 0) -> None:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = mode
            info.mtime = EPOCH
            info.uid = info.gid = uid
            tar.addfile(info)

        def add_file(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))

        for d in (
            "bin",
            "dev",
            "etc",
            "home",
            "proc",
            "root",
            "sys",
            "usr",
            "usr/bin",
            "usr/sbin",
            "sbin",
            "var",
            "var/spool",
            "var/www",
        ):
            add_dir(d, 0o700 if d == "root" else 0o755)
        add_dir("home/user", 0o755, uid=1000)
        add_dir("tmp", 0o1777)
        with open(busybox, "rb") as f:
            add_file("bin/busybox", f.read(), 0o755)
        for name in applets(busybox):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type = tarfile.LNKTYPE
            link.linkname = "bin/busybox"
            link.mode = 0o755
            link.mtime = EPOCH
            tar.addfile(link)
        add_file("etc/passwd", PASSWD.encode())
        add_file("etc/group", GROUP.encode())
        add_file("etc/hostname", b"busybox\n")
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6, filename="") as gz:
        gz.write(data)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def write_blob(blobs: Path, data: bytes) -> str:
    digest = sha256(data)
    (blobs / digest.split(":", 1)[1]).write_bytes(data)
    return digest


def build(out: Path, busybox: str) -> None:
    layer = build_layer(busybox)
    layer_gz = gzip_bytes(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["sh"],
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        "history": [
            {"created": CREATED, "created_by": "skiff tools/build_images.py: busybox-static"},
            {"created": CREATED, "created_by": 'CMD ["sh"]', "empty_layer": True},
        ],
    }
    config_bytes = canonical(config)

    stage = out / "busybox-oci.tmp"
    shutil.rmtree(stage, ignore_errors=True)
    blobs = stage / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layer_digest = write_blob(blobs, layer_gz)
    config_digest = write_blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config_bytes),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": len(layer_gz),
            }
        ],
    }
    manifest_bytes = canonical(manifest)
    manifest_digest = write_blob(blobs, manifest_bytes)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": REF,
                    "org.opencontainers.image.ref.name": "latest",
                },
            }
        ],
    }
    (stage / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    (stage / "index.json").write_bytes(canonical(index))

    layout = out / "busybox-oci"
    shutil.rmtree(layout, ignore_errors=True)
    os.replace(stage, layout)

    # The docker save archive: the layout's files plus manifest.json and repositories.
    docker_manifest = [
        {
            "Config": f"blobs/sha256/{config_digest.split(':')[1]}",
            "RepoTags": ["busybox:latest"],
            "Layers": [f"blobs/sha256/{layer_digest.split(':')[1]}"],
        }
    ]
    repositories = {"busybox": {"latest": layer_digest.split(":")[1]}}
    tmp_tar = out / "busybox.tar.tmp"
    with tarfile.open(tmp_tar, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = EPOCH
            tar.addfile(info, io.BytesIO(data))

        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = EPOCH
            tar.addfile(info)
        for blob in sorted(blobs_dir.name for blobs_dir in (layout / "blobs" / "sha256").iterdir()):
            add(f"blobs/sha256/{blob}", (layout / "blobs" / "sha256" / blob).read_bytes())
        add("oci-layout", (layout / "oci-layout").read_bytes())
        add("index.json", (layout / "index.json").read_bytes())
        add("manifest.json", canonical(docker_manifest))
        add("repositories", canonical(repositories))
    os.replace(tmp_tar, out / "busybox.tar")
    print(f"busybox image {manifest_digest}: {layout} and {out / 'busybox.tar'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="build/images", type=Path)
    parser.add_argument("--busybox", default=BUSYBOX)
    args = parser.parse_args()
    if not os.path.exists(args.busybox):
        print(
            f"build_images: {args.busybox} not found (apt-get install busybox-static)",
            file=sys.stderr,
        )
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    build(args.out, args.busybox)
    return 0


if __name__ == "__main__":
    sys.exit(main())
