"""Make test images directly in a content store."""

from __future__ import annotations

import gzip
import hashlib
import json
import os

from tar_layers import entry, make_tar

from skiff.containerd.content import ContentStore
from skiff.oci import mediatypes as mt
from skiff.oci.image import Descriptor, Image, Index, Manifest
from skiff.oci.platform import Platform


def image_with_layers(
    store: ContentStore, layers: list[bytes], *, arch: str = "amd64", variant: str = ""
) -> Descriptor:
    """An OCI image whose layers are the given plain tars (stored gzipped)."""
    descs = []
    diff_ids = []
    for plain in layers:
        blob = gzip.compress(plain, compresslevel=1)
        descs.append(
            Descriptor(media_type=mt.OCI_LAYER_GZIP, digest=store.write_blob(blob), size=len(blob))
        )
        diff_ids.append("sha256:" + hashlib.sha256(plain).hexdigest())
    cfg = Image(architecture=arch, os="linux", variant=variant).to_json()
    cfg["rootfs"]["diff_ids"] = diff_ids
    cfg["config"] = {"Cmd": ["/bin/sh"]}
    cfg_bytes = json.dumps(cfg).encode()
    man = Manifest(
        config=Descriptor(
            media_type=mt.OCI_CONFIG, digest=store.write_blob(cfg_bytes), size=len(cfg_bytes)
        ),
        layers=tuple(descs),
    )
    data = json.dumps(man.to_json()).encode()
    return Descriptor(
        media_type=mt.OCI_MANIFEST,
        digest=store.write_blob(data),
        size=len(data),
        platform=Platform(os="linux", architecture=arch, variant=variant),
    )


def random_image(store: ContentStore, size: int) -> Descriptor:
    return image_with_layers(store, [make_tar(entry("blob.bin", data=os.urandom(size)))])


def index_of(store: ContentStore, manifests: list[Descriptor]) -> Descriptor:
    data = json.dumps(Index(manifests=tuple(manifests)).to_json()).encode()
    return Descriptor(media_type=mt.OCI_INDEX, digest=store.write_blob(data), size=len(data))
