"""skiff-ctr: version, namespaces, content, snapshots, events, leases."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from skiff.containerd.client._defaults import DEFAULT_SNAPSHOTTER
from skiff.containerd.ctr._format import (
    go_time,
    human_duration,
    human_size,
    labels_text,
    tab_table,
    table,
)
from skiff.errors import InvalidArgument

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (4 ms of run's start-up)
if TYPE_CHECKING:
    import argparse

    from skiff.containerd.client import Client


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label {item!r}")
        out[key] = value if sep else ""
    return out


def snapshotter(args: argparse.Namespace) -> str:
    return str(getattr(args, "snapshotter", "") or DEFAULT_SNAPSHOTTER)


def version(client: Client, args: argparse.Namespace) -> int:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        ours = dist_version("skiff")
    except PackageNotFoundError:
        ours = "unknown"
    print("Client:")
    print(f"  Version:  {ours}")
    print("  Revision: skiff")
    print(f"  Python version: {sys.version.split()[0]}")
    print()
    v = client.version()
    uuid = client.server_uuid()
    print("Server:")
    print(f"  Version:  {v.version}")
    print(f"  Revision: {v.revision}")
    print(f"  UUID: {uuid}")
    return 0


# -- namespaces ---------------------------------------------------------------------


def namespaces_ls(client: Client, args: argparse.Namespace) -> int:
    spaces = client.list_namespaces()
    if args.quiet:
        for ns in spaces:
            print(ns.name)
        return 0
    lines = ["NAME\tLABELS\t"]
    for ns in spaces:
        labels = ",".join(f"{k}={v}" for k, v in sorted(ns.labels.items()))
        lines.append(f"{ns.name}\t{labels}\t")
    table(lines, minwidth=1, padding=1)
    return 0


def namespaces_create(client: Client, args: argparse.Namespace) -> int:
    client.create_namespace(args.name, parse_labels(args.labels))
    return 0


def namespaces_rm(client: Client, args: argparse.Namespace) -> int:
    failed = 0
    for name in args.names:
        try:
            client.delete_namespace(name)
        except Exception as e:
            print(f"skiff-ctr: unable to delete {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(name)
    if failed:
        raise _Failed()
    return 0


class _Failed(Exception):
    """Some items failed; each was reported already."""

    def __str__(self) -> str:
        return "one or more deletions failed"


def namespaces_label(client: Client, args: argparse.Namespace) -> int:
    labels = parse_labels(args.labels)
    ns = client.set_namespace_labels(args.name, labels)
    for k, v in sorted(ns.labels.items()):
        print(f"{k}={v}")
    return 0


# -- content --------------------------------------------------------------------------


def content_ls(client: Client, args: argparse.Namespace) -> int:
    infos = client.list_content(args.filters)
    if args.quiet:
        for i in infos:
            print(i.digest)
        return 0
    now = datetime.now(UTC)
    lines = ["DIGEST\tSIZE\tAGE\tLABELS"]
    for i in infos:
        age = (now - i.created_at).total_seconds() if i.created_at else 0
        labels = ",".join(f"{k}={v}" for k, v in sorted(i.labels.items())) or "-"
        lines.append(f"{i.digest}\t{human_size(i.size)}\t{human_duration(age)}\t{labels}")
    tab_table(lines)
    return 0


def content_get(client: Client, args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    for chunk in client.read_content(args.digest):
        out.write(chunk)
    out.flush()
    return 0


def content_rm(client: Client, args: argparse.Namespace) -> int:
    for d in args.digests:
        client.delete_content(d)
        print(d)
    return 0


# -- snapshots ------------------------------------------------------------------------


def snapshots_ls(client: Client, args: argparse.Namespace) -> int:
    infos = client.list_snapshots(snapshotter(args))
    lines = ["KEY\tPARENT\tKIND\t"]
    for i in infos:
        lines.append(f"{i.name}\t{i.parent}\t{i.kind}\t")
    table(lines, minwidth=1, padding=1)
    return 0


def snapshots_mounts(client: Client, args: argparse.Namespace) -> int:
    for m in client.snapshot_mounts(snapshotter(args), args.key):
        opts = f" -o {','.join(m.options)}" if m.options else ""
        print(f"mount -t {m.type} {m.source} {args.target}{opts}")
    return 0


def snapshots_rm(client: Client, args: argparse.Namespace) -> int:
    for key in args.keys:
        client.remove_snapshot(snapshotter(args), key)
    return 0


def snapshots_usage(client: Client, args: argparse.Namespace) -> int:
    name = snapshotter(args)
    keys = args.keys or [i.name for i in client.list_snapshots(name)]
    lines = ["KEY\tSIZE\tINODES\t"]
    for key in keys:
        u = client.snapshot_usage(name, key)
        lines.append(f"{key}\t{human_size(u.size)}\t{u.inodes}\t")
    table(lines, minwidth=1, padding=1)
    return 0


# -- events ------------------------------------------------------------------------------


def events(client: Client, args: argparse.Namespace) -> int:
    stream = client.subscribe(args.filters)
    try:
        for env in stream:
            line = f"{go_time(env.timestamp)} {env.namespace} {env.topic} {env.event_json()}"
            print(line, flush=True)
    finally:
        stream.close()
    return 0


# -- leases -------------------------------------------------------------------------------


def leases_ls(client: Client, args: argparse.Namespace) -> int:
    leases = client.list_leases()
    if args.quiet:
        for lease in leases:
            print(lease.id)
        return 0
    lines = ["ID\tCREATED AT\tLABELS\t"]
    for lease in leases:
        created = lease.created_at.strftime("%Y-%m-%dT%H:%M:%SZ") if lease.created_at else ""
        lines.append(f"{lease.id}\t{created}\t{labels_text(dict(lease.labels))}\t")
    table(lines, minwidth=1, padding=1)
    return 0


def leases_rm(client: Client, args: argparse.Namespace) -> int:
    for lease_id in args.ids:
        client.delete_lease(lease_id)
        print(lease_id)
    return 0
