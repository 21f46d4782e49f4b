"""Image work done from the client side, as containerd's own client does it:
pull (skiff.image's registry client writing through the content service),
import/export of archives, push, and unpack through the snapshots service
and diff Apply. Everything runs under a lease so that the supervisor's
garbage collector leaves half-made images alone, and the blobs get
containerd's gc.ref labels so the finished image keeps its children alive.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO

from skiff.containerd.client._defaults import DEFAULT_SNAPSHOTTER
from skiff.containerd.client.content import RemoteContentStore
from skiff.errors import AlreadyExists, FailedPrecondition, NotFound
from skiff.oci import mediatypes as mt
from skiff.oci import platform as plat
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, Index, Manifest, chain_ids
from skiff.oci.image import Image as ImageConfig
from skiff.oci.platform import Platform

if TYPE_CHECKING:  # not at run time: skiff-ctr run drives these with the lean client
    from skiff.containerd.client.core import Client

GC_EXPIRE = "containerd.io/gc.expire"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot"
UNCOMPRESSED = "containerd.io/uncompressed"
SNAPSHOT_REF = "containerd.io/snapshot.ref"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedImage:
    """An image record resolved for one platform."""

    name: str
    target: Descriptor
    manifest: Descriptor
    config_descriptor: Descriptor
    config: ImageConfig
    layers: Sequence[Descriptor]

    @property
    def chain_id(self) -> str:
        ids = chain_ids(list(self.config.rootfs.diff_ids))
        return str(ids[-1]) if ids else ""


@contextmanager
def temporary_lease(client: Client, hours: int = 24) -> Iterator[Client]:
    """A view of `client` under a fresh lease that expires by itself should we die."""
    expire = (datetime.now(UTC) + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
    lease = client.create_lease(f"skiff-ctr-{os.urandom(8).hex()}", {GC_EXPIRE: expire})
    try:
        yield client.with_lease(lease.id)
    finally:
        try:
            client.delete_lease(lease.id)
        except NotFound:
            pass


def _manifest_for(store: RemoteContentStore, target: Descriptor, want: Platform) -> Descriptor:
    if target.media_type in mt.INDEXES:
        index = Index.from_json(store.read_all(target.digest, mt.MAX_MANIFEST_SIZE))
        candidates = [
            (d.platform, d)
            for d in index.manifests
            if d.platform is not None and d.media_type in mt.MANIFESTS and store.exists(d.digest)
        ]
        chosen = plat.best(want, candidates)
        if chosen is None:
            raise NotFound(f"no manifest for platform {want} in {target.digest}")
        return chosen
    return target


def resolve(
    client: Client, name: str, target: Descriptor, platform: Platform | None = None
) -> ResolvedImage:
    store = RemoteContentStore(client)
    want = platform or plat.host()
    manifest_desc = _manifest_for(store, target, want)
    manifest = Manifest.from_json(store.read_all(manifest_desc.digest, mt.MAX_MANIFEST_SIZE))
    config = ImageConfig.from_json(store.read_all(manifest.config.digest, mt.MAX_MANIFEST_SIZE))
    if len(config.rootfs.diff_ids) != len(manifest.layers):
        raise FailedPrecondition("image config and manifest disagree on the number of layers")
    return ResolvedImage(
        name=name,
        target=target,
        manifest=manifest_desc,
        config_descriptor=manifest.config,
        config=config,
        layers=list(manifest.layers),
    )


def get_image(client: Client, name: str, platform: Platform | None = None) -> ResolvedImage:
    image = client.get_image(name)
    return resolve(client, image.name, image.target, platform)


def set_gc_labels(client: Client, target: Descriptor) -> None:
    """Label the tree under `target` so each blob references its children
    (containerd's collector follows these labels from the image record)."""
    store = RemoteContentStore(client)
    data = store.read_all(target.digest, mt.MAX_MANIFEST_SIZE)
    if target.media_type in mt.INDEXES:
        index = Index.from_json(data)
        present = [d for d in index.manifests if store.exists(d.digest)]
        labels = {f"{GC_REF_CONTENT}.m.{i}": str(d.digest) for i, d in enumerate(present)}
        if labels:
            client.update_content_labels(str(target.digest), labels)
        for d in present:
            set_gc_labels(client, d)
        return
    manifest = Manifest.from_json(data)
    labels = {f"{GC_REF_CONTENT}.config": str(manifest.config.digest)}
    for i, layer in enumerate(manifest.layers):
        if store.exists(layer.digest):
            labels[f"{GC_REF_CONTENT}.l.{i}"] = str(layer.digest)
    client.update_content_labels(str(target.digest), labels)


def unpack(client: Client, image: ResolvedImage, snapshotter: str = DEFAULT_SNAPSHOTTER) -> str:
    """Make the committed snapshot chain of the image's layers; returns the top
    chain ID. Each missing layer: Prepare on its parent, diff Apply, Commit."""
    chain = [str(c) for c in chain_ids(list(image.config.rootfs.diff_ids))]
    for i, layer in enumerate(image.layers):
        try:
            client.stat_snapshot(snapshotter, chain[i])
            continue
        except NotFound:
            pass
        parent = chain[i - 1] if i else ""
        key = f"extract-{os.urandom(6).hex()} {chain[i]}"
        try:
            mounts = client.prepare_snapshot(snapshotter, key, parent, {SNAPSHOT_REF: chain[i]})
        except AlreadyExists:
            continue  # "target snapshot ...: already exists": unpacked meanwhile by another
        try:
            applied = client.apply_diff(layer, mounts)
            want = image.config.rootfs.diff_ids[i]
            if applied.digest != want:
                raise FailedPrecondition(
                    f"layer {layer.digest}: unpacked to {applied.digest}, image config says {want}"
                )
            client.commit_snapshot(snapshotter, chain[i], key)
        except AlreadyExists:
            pass  # unpacked meanwhile by someone else
        finally:
            try:
                client.remove_snapshot(snapshotter, key)
            except (NotFound, FailedPrecondition):
                pass  # committed: the active key is gone
        try:
            client.update_content_labels(
                str(layer.digest), {UNCOMPRESSED: str(image.config.rootfs.diff_ids[i])}
            )
        except NotFound:
            pass
    top = chain[-1] if chain else ""
    if top:
        client.update_content_labels(
            str(image.config_descriptor.digest), {f"{GC_REF_SNAPSHOT}.{snapshotter}": top}
        )
    return top


def pull(
    client: Client,
    ref: str,
    *,
    platform: Platform | None = None,
    plain_http: bool = False,
    unpack_into: str | None = DEFAULT_SNAPSHOTTER,
    progress: Any = None,
) -> ResolvedImage:
    """Fetch `ref` from its registry into the supervisor's content store,
    record the image and (unless `unpack_into` is None) unpack it."""
    from skiff.image import pull as image_pull
    from skiff.image.registry import RegistryClient, RegistryOptions
    from skiff.oci.reference import parse as parse_reference

    reference = parse_reference(ref)
    insecure = frozenset({reference.domain}) if plain_http else frozenset()
    registry = RegistryClient(RegistryOptions(insecure=insecure))
    want = platform or plat.host()
    with temporary_lease(client) as leased:
        store = RemoteContentStore(leased)
        result = image_pull.pull(registry, reference, store, platform=want, progress=progress)
        set_gc_labels(leased, result.target)
        leased.put_image(result.name, result.target)
        resolved = resolve(leased, result.name, result.target, want)
        if unpack_into:
            unpack(leased, resolved, unpack_into)
    return resolved


def push(client: Client, name: str, ref: str | None = None, *, plain_http: bool = False) -> Digest:
    from skiff.image import pull as image_pull
    from skiff.image.registry import RegistryClient, RegistryOptions
    from skiff.oci.reference import parse as parse_reference

    image = client.get_image(name)
    reference = parse_reference(ref or name)
    insecure = frozenset({reference.domain}) if plain_http else frozenset()
    registry = RegistryClient(RegistryOptions(insecure=insecure))
    return image_pull.push(registry, reference, RemoteContentStore(client), image.target)


def import_archive(
    client: Client,
    archive: BinaryIO,
    *,
    unpack_into: str | None = DEFAULT_SNAPSHOTTER,
    platform: Platform | None = None,
    base_name: str = "",
) -> list[ResolvedImage | str]:
    """Load a `docker save` archive or OCI layout tar; returns the images
    (resolved for the platform when they could be unpacked, else names)."""
    from skiff.image.archive import import_docker_archive

    out: list[ResolvedImage | str] = []
    with temporary_lease(client) as leased, tempfile.TemporaryDirectory() as work:
        store = RemoteContentStore(leased)
        imported = import_docker_archive(store, archive, work)
        for n, item in enumerate(imported):
            name = item.name or (f"{base_name}:{n}" if base_name else "")
            if not name:
                name = f"import-{datetime.now(UTC):%Y-%m-%d}@{item.target.digest}"
            set_gc_labels(leased, item.target)
            leased.put_image(name, item.target)
            try:
                resolved = resolve(leased, name, item.target, platform)
            except NotFound:
                out.append(name)
                continue
            if unpack_into:
                unpack(leased, resolved, unpack_into)
            out.append(resolved)
    return out


def export_archive(client: Client, names: Sequence[str], out: BinaryIO) -> None:
    from skiff.image.archive import export_images

    images = [(name, client.get_image(name).target) for name in names]
    export_images(RemoteContentStore(client), images, out)
