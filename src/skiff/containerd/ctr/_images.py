"""skiff-ctr images (ls, pull, push, import, export, rm, tag) and content fetch."""

from __future__ import annotations

import argparse
import sys
import time

from skiff.containerd.client import Client
from skiff.containerd.client import images as image_ops
from skiff.containerd.client.content import RemoteContentStore
from skiff.containerd.ctr._format import binary_size, table
from skiff.containerd.ctr._misc import snapshotter
from skiff.errors import AlreadyExists, NotFound, SkiffError
from skiff.oci import mediatypes as mt
from skiff.oci.image import Descriptor, Image, Index, Manifest
from skiff.oci.platform import Platform


def _platform(args: argparse.Namespace) -> Platform | None:
    return Platform.parse(args.platform) if getattr(args, "platform", "") else None


def _size_and_platforms(store: RemoteContentStore, target: Descriptor) -> tuple[int, list[str]]:
    """What ctr shows: the bytes of the image for this host (index, manifest,
    config and layers present) and the platforms the image offers."""
    try:
        data = store.read_all(target.digest, mt.MAX_MANIFEST_SIZE)
    except NotFound:
        return target.size, []
    if target.media_type in mt.INDEXES:
        index = Index.from_json(data)
        platforms = sorted(
            {
                "/".join(
                    x for x in (d.platform.os, d.platform.architecture, d.platform.variant) if x
                )
                for d in index.manifests
                if d.platform is not None
            }
        )
        size = target.size
        from skiff.oci import platform as plat

        chosen = plat.best(
            plat.host(), [(d.platform, d) for d in index.manifests if d.platform is not None]
        )
        if chosen is not None and store.exists(chosen.digest):
            sub, _ = _size_and_platforms(store, chosen)
            size += sub
        return size, platforms
    manifest = Manifest.from_json(data)
    size = target.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
    platforms = []
    try:
        config = Image.from_json(store.read_all(manifest.config.digest, mt.MAX_MANIFEST_SIZE))
        platforms = ["/".join(x for x in (config.os, config.architecture, config.variant) if x)]
    except (NotFound, SkiffError):
        pass
    return size, platforms


def ls(client: Client, args: argparse.Namespace) -> int:
    imgs = client.list_images(args.filters)
    if args.quiet:
        for i in imgs:
            print(i.name)
        return 0
    store = RemoteContentStore(client)
    lines = ["REF\tTYPE\tDIGEST\tSIZE\tPLATFORMS\tLABELS\t"]
    for i in imgs:
        size, platforms = _size_and_platforms(store, i.target)
        labels = ",".join(f"{k}={v}" for k, v in sorted(i.labels.items())) or "-"
        lines.append(
            f"{i.name}\t{i.target.media_type}\t{i.target.digest}\t{binary_size(size)}\t"
            f"{','.join(platforms) or '-'}\t{labels}\t"
        )
    table(lines, minwidth=1, padding=1)
    return 0


def pull(client: Client, args: argparse.Namespace) -> int:
    start = time.monotonic()
    print(f"{args.ref}: resolving", flush=True)
    resolved = image_ops.pull(
        client,
        args.ref,
        platform=_platform(args),
        plain_http=args.plain_http,
        unpack_into=snapshotter(args),
    )
    platform = resolved.config.platform
    plat_text = "/".join(x for x in (platform.os, platform.architecture, platform.variant) if x)
    print(f"unpacking {plat_text} {resolved.target.digest}...", flush=True)
    if args.print_chainid:
        print(f"image chain ID: {resolved.chain_id}")
    print(f"done: {(time.monotonic() - start) * 1000:.0f}ms")
    return 0


def fetch(client: Client, args: argparse.Namespace) -> int:
    start = time.monotonic()
    resolved = image_ops.pull(
        client, args.ref, platform=_platform(args), plain_http=args.plain_http, unpack_into=None
    )
    print(f"{resolved.name}: fetched {resolved.target.digest}")
    print(f"done: {(time.monotonic() - start) * 1000:.0f}ms")
    return 0


def push(client: Client, args: argparse.Namespace) -> int:
    local = args.local or args.remote
    digest = image_ops.push(client, local, args.remote, plain_http=args.plain_http)
    print(f"{args.remote}: pushed {digest}")
    return 0


def import_(client: Client, args: argparse.Namespace) -> int:
    unpack_into = None if args.no_unpack else snapshotter(args)
    if args.file == "-":
        results = image_ops.import_archive(
            client,
            sys.stdin.buffer,
            unpack_into=unpack_into,
            platform=_platform(args),
            base_name=args.base_name,
        )
    else:
        with open(args.file, "rb") as f:
            results = image_ops.import_archive(
                client,
                f,
                unpack_into=unpack_into,
                platform=_platform(args),
                base_name=args.base_name,
            )
    for r in results:
        if isinstance(r, str):
            print(f"{r}: imported (no content for this platform)")
        elif unpack_into:
            print(f"unpacking {r.name} ({r.target.digest})...done")
        else:
            print(f"{r.name}: imported {r.target.digest}")
    return 0


def export(client: Client, args: argparse.Namespace) -> int:
    if args.file == "-":
        image_ops.export_archive(client, args.refs, sys.stdout.buffer)
        return 0
    tmp = f"{args.file}.tmp"
    with open(tmp, "wb") as out:
        image_ops.export_archive(client, args.refs, out)
    import os

    os.replace(tmp, args.file)
    return 0


def rm(client: Client, args: argparse.Namespace) -> int:
    failed = False
    for ref in args.refs:
        try:
            client.delete_image(ref, sync=args.sync)
        except NotFound:
            print(f"skiff-ctr: image {ref!r}: not found", file=sys.stderr)
            failed = True
            continue
        print(ref)
    if failed:
        raise NotFound("unable to delete one or more images")
    return 0


def tag(client: Client, args: argparse.Namespace) -> int:
    source = client.get_image(args.source)
    for target in args.targets:
        try:
            client.create_image(target, source.target, source.labels)
        except AlreadyExists:
            if not args.force:
                raise
            client.delete_image(target)
            client.create_image(target, source.target, source.labels)
        print(target)
    return 0
