"""Import and export images as OCI image layouts and `docker save`
archives. Image layer; works on any content store with the ContentStore
methods of skiff-containerd (duck typed).

Export writes both formats at once into a tar (Docker 25 does the same):
`blobs/sha256/...`, `oci-layout`, `index.json`, `manifest.json` and
`repositories`, so that every digest survives a save/load round trip.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from skiff.errors import InvalidArgument, NotFound
from skiff.image.compression import GZIP_MAGIC, ZSTD_MAGIC
from skiff.oci import mediatypes as mt
from skiff.oci import reference
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, Image, Index, Manifest, dumps, sniff_media_type

REF_NAME = "org.opencontainers.image.ref.name"
IMAGE_NAME = "io.containerd.image.name"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ImportedImage:
    name: str  # normalised reference, or "" if the archive named none
    target: Descriptor  # the manifest or index


def _ingest(store: Any, src: BinaryIO, expected: Digest, size: int = 0) -> None:
    if store.exists(expected):
        return
    with store.writer(f"import-{expected}", total=size, expected=expected) as w:
        w.truncate(0)
        while chunk := src.read(_CHUNK):
            w.write(chunk)
        w.commit(size, expected)


def _ingest_file(store: Any, path: str, expected: Digest | None = None) -> Digest:
    if expected is None:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        expected = Digest("sha256:" + h.hexdigest())
    with open(path, "rb") as f:
        _ingest(store, f, expected, os.path.getsize(path))
    return expected


def _layer_media_type(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return mt.DOCKER_LAYER_GZIP
    if head.startswith(ZSTD_MAGIC):
        return mt.OCI_LAYER_ZSTD
    return mt.DOCKER_LAYER


def _safe_join(base: str, rel: str) -> str:
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or ".." in parts:
        raise InvalidArgument(f"archive path {rel!r} escapes the archive")
    return os.path.join(base, *parts)


def _extract_archive(archive: BinaryIO, dest: str) -> None:
    """Unpack the regular files of an image archive (nothing else matters)."""
    with tarfile.open(fileobj=archive, mode="r|*") as tar:
        for m in tar:
            if not m.isreg():
                continue
            path = _safe_join(dest, m.name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            src = tar.extractfile(m)
            assert src is not None
            with open(path, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)


def import_oci_layout(store: Any, layout: str) -> list[ImportedImage]:
    """Ingest every blob an OCI layout's index reaches; names come from
    the `org.opencontainers.image.ref.name` / containerd name annotations."""
    try:
        with open(os.path.join(layout, "oci-layout")) as f:
            version = json.load(f).get("imageLayoutVersion")
    except FileNotFoundError:
        raise InvalidArgument(f"{layout}: not an OCI image layout (no oci-layout)")
    if version != mt.OCI_LAYOUT_VERSION:
        raise InvalidArgument(f"{layout}: unsupported image layout version {version!r}")
    with open(os.path.join(layout, "index.json"), "rb") as f:
        index = Index.from_json(f.read(mt.MAX_MANIFEST_SIZE + 1))
    out = []
    for desc in index.manifests:
        _import_tree(store, layout, desc)
        name = desc.annotations.get(IMAGE_NAME, "")
        if not name and desc.annotations.get(REF_NAME):
            ref_name = desc.annotations[REF_NAME]
            try:
                name = str(reference.parse(ref_name))
            except InvalidArgument:
                name = ""  # a bare tag like "latest" names no repository
        out.append(ImportedImage(name, desc))
    return out


def _blob_path(layout: str, digest: Digest) -> str:
    return os.path.join(layout, "blobs", digest.algorithm, digest.encoded)


def _import_tree(store: Any, layout: str, desc: Descriptor) -> None:
    path = _blob_path(layout, desc.digest)
    if not os.path.exists(path):
        if store.exists(desc.digest):
            return
        raise NotFound(f"blob {desc.digest} missing from the layout")
    if desc.media_type in mt.INDEXES or desc.media_type in mt.MANIFESTS:
        if desc.size > mt.MAX_MANIFEST_SIZE:
            raise InvalidArgument(f"manifest {desc.digest} too large: {desc.size} bytes")
        with open(path, "rb") as f:
            data = f.read(mt.MAX_MANIFEST_SIZE + 1)
        if Digest.from_bytes(data, desc.digest.algorithm) != desc.digest:
            raise InvalidArgument(f"manifest {desc.digest}: digest mismatch")
        if desc.media_type in mt.INDEXES:
            for child in Index.from_json(data).manifests:
                _import_tree(store, layout, child)
        else:
            man = Manifest.from_json(data)
            for child in (man.config, *man.layers):
                _import_tree(store, layout, child)
    _ingest_file(store, path, desc.digest)


def import_docker_archive(store: Any, archive: BinaryIO, workdir: str) -> list[ImportedImage]:
    """Load a `docker save` tar: OCI parts are used when present (exact
    digests), else a schema 2 manifest is made from manifest.json."""
    tmp = os.path.join(workdir, "import")
    os.makedirs(tmp)
    try:
        _extract_archive(archive, tmp)
        if os.path.exists(os.path.join(tmp, "manifest.json")):
            with open(os.path.join(tmp, "manifest.json"), "rb") as f:
                entries = json.loads(f.read(mt.MAX_MANIFEST_SIZE + 1))
        elif os.path.exists(os.path.join(tmp, "index.json")):
            return import_oci_layout(store, tmp)
        else:
            raise InvalidArgument("not an image archive: no manifest.json or index.json")
        by_config: dict[str, Descriptor] = {}
        if os.path.exists(os.path.join(tmp, "index.json")):
            for imported in import_oci_layout(store, tmp):
                _note_configs(store, imported.target, by_config)
        out = []
        for entry in entries:
            target = _import_docker_entry(store, tmp, entry, by_config)
            tags = entry.get("RepoTags") or [""]
            for tag in tags:
                out.append(ImportedImage(str(reference.parse(tag)) if tag else "", target))
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _note_configs(store: Any, desc: Descriptor, by_config: dict[str, Descriptor]) -> None:
    data = store.read_all(desc.digest, mt.MAX_MANIFEST_SIZE)
    if desc.media_type in mt.INDEXES:
        for child in Index.from_json(data).manifests:
            if store.exists(child.digest):
                _note_configs(store, child, by_config)
    elif desc.media_type in mt.MANIFESTS:
        by_config[str(Manifest.from_json(data).config.digest)] = desc


def _import_docker_entry(
    store: Any, tmp: str, entry: Mapping[str, Any], by_config: Mapping[str, Descriptor]
) -> Descriptor:
    config_path = _safe_join(tmp, str(entry["Config"]))
    if os.path.getsize(config_path) > mt.MAX_MANIFEST_SIZE:
        raise InvalidArgument("image config too large")
    config_digest = _ingest_file(store, config_path)
    if str(config_digest) in by_config:
        return by_config[str(config_digest)]
    config_bytes = store.read_all(config_digest)
    Image.from_json(config_bytes)  # refuse a config that is not one
    layers = []
    for rel in entry.get("Layers") or ():
        path = _safe_join(tmp, str(rel))
        with open(path, "rb") as f:
            head = f.read(4)
        digest = _ingest_file(store, path)
        layers.append(
            Descriptor(
                media_type=_layer_media_type(head), digest=digest, size=os.path.getsize(path)
            )
        )
    manifest = Manifest(
        media_type=mt.DOCKER_MANIFEST,
        config=Descriptor(
            media_type=mt.DOCKER_CONFIG, digest=config_digest, size=len(config_bytes)
        ),
        layers=tuple(layers),
    )
    data = json.dumps(manifest.to_json(), indent=3).encode()
    digest = store.write_blob(data)
    return Descriptor(media_type=mt.DOCKER_MANIFEST, digest=digest, size=len(data))


# -- export ---------------------------------------------------------------


def _tree(store: Any, desc: Descriptor) -> list[Descriptor]:
    """Every descriptor reachable from `desc` (missing foreign platforms of
    an index are skipped, as containerd's export does)."""
    out = [desc]
    if desc.media_type in mt.INDEXES:
        for child in Index.from_json(store.read_all(desc.digest, mt.MAX_MANIFEST_SIZE)).manifests:
            if store.exists(child.digest):
                out.extend(_tree(store, child))
    elif desc.media_type in mt.MANIFESTS:
        man = Manifest.from_json(store.read_all(desc.digest, mt.MAX_MANIFEST_SIZE))
        out.append(man.config)
        out.extend(man.layers)
    return out


def _image_manifests(store: Any, desc: Descriptor) -> list[Manifest]:
    return [
        Manifest.from_json(store.read_all(d.digest, mt.MAX_MANIFEST_SIZE))
        for d in _tree(store, desc)
        if d.media_type in mt.MANIFESTS
    ]


def export_images(
    store: Any, images: Sequence[tuple[str, Descriptor]], out: BinaryIO, *, mtime: int = 0
) -> None:
    """Write a tar that is both an OCI layout and a `docker save` archive.

    `images` are (normalised reference or "", manifest/index descriptor).
    """
    blobs: dict[str, Descriptor] = {}
    index_entries = []
    docker_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    by_target: dict[str, dict[str, Any]] = {}
    for name, desc in images:
        for d in _tree(store, desc):
            blobs.setdefault(str(d.digest), d)
        annotations = dict(desc.annotations)
        ref = reference.parse(name) if name else None
        if ref is not None:
            annotations[IMAGE_NAME] = str(ref)
            annotations[REF_NAME] = ref.tag or str(ref.digest)
        index_entries.append(
            Descriptor(
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                annotations=annotations,
                platform=desc.platform,
            ).to_json()
        )
        for man in _image_manifests(store, desc)[:1]:
            entry = by_target.get(str(desc.digest))
            if entry is None:
                entry = {
                    "Config": f"blobs/sha256/{man.config.digest.encoded}",
                    "RepoTags": [],
                    "Layers": [f"blobs/sha256/{layer.digest.encoded}" for layer in man.layers],
                }
                by_target[str(desc.digest)] = entry
                docker_entries.append(entry)
            if ref is not None and ref.tag:
                entry["RepoTags"].append(ref.familiar())
                if man.layers:
                    repo = ref.familiar().rsplit(":", 1)[0]
                    repositories.setdefault(repo, {})[ref.tag] = man.layers[-1].digest.encoded
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(arcname: str, data: bytes) -> None:
            ti = tarfile.TarInfo(arcname)
            ti.size, ti.mode, ti.mtime = len(data), 0o644, mtime
            tar.addfile(ti, io.BytesIO(data))

        for dname in ("blobs", "blobs/sha256"):
            ti = tarfile.TarInfo(dname)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, mtime
            tar.addfile(ti)
        for digest in sorted(blobs):
            dg = Digest(digest)
            if dg.algorithm != "sha256":
                raise InvalidArgument(f"cannot export {dg}: docker archives hold sha256 only")
            info = store.info(dg)
            ti = tarfile.TarInfo(f"blobs/sha256/{dg.encoded}")
            ti.size, ti.mode, ti.mtime = info.size, 0o644, mtime
            with store.open(dg) as f:
                tar.addfile(ti, f)
        add_bytes("oci-layout", dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}))
        add_bytes(
            "index.json",
            dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": index_entries}),
        )
        add_bytes("manifest.json", json.dumps(docker_entries, separators=(",", ":")).encode())
        add_bytes("repositories", dumps(repositories))


def export_oci_layout(store: Any, images: Iterable[tuple[str, Descriptor]], layout: str) -> None:
    """Write (or add to) an OCI image layout directory."""
    os.makedirs(os.path.join(layout, "blobs"), exist_ok=True)
    index_path = os.path.join(layout, "index.json")
    entries: list[dict[str, Any]] = []
    if os.path.exists(index_path):
        with open(index_path, "rb") as f:
            entries = [d.to_json() for d in Index.from_json(f.read()).manifests]
    for name, desc in images:
        for d in _tree(store, desc):
            path = _blob_path(layout, d.digest)
            if os.path.exists(path):
                continue
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with store.open(d.digest) as src, open(path + ".tmp", "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(path + ".tmp", path)
        annotations = dict(desc.annotations)
        if name:
            ref = reference.parse(name)
            annotations[IMAGE_NAME] = str(ref)
            annotations[REF_NAME] = ref.tag or str(ref.digest)
        entries.append(
            Descriptor(
                media_type=desc.media_type,
                digest=desc.digest,
                size=desc.size,
                annotations=annotations,
                platform=desc.platform,
            ).to_json()
        )
    with open(os.path.join(layout, "oci-layout"), "wb") as f:
        f.write(dumps({"imageLayoutVersion": mt.OCI_LAYOUT_VERSION}))
    with open(index_path + ".tmp", "wb") as f:
        f.write(dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": entries}))
    os.replace(index_path + ".tmp", index_path)


def read_target(store: Any, desc: Descriptor) -> Manifest | Index:
    data = store.read_all(desc.digest, mt.MAX_MANIFEST_SIZE)
    media_type = desc.media_type or sniff_media_type(data)
    if media_type in mt.INDEXES:
        return Index.from_json(data)
    return Manifest.from_json(data)
