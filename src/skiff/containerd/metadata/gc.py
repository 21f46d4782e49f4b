"""Garbage collection for skiff-containerd: mark from the roots of every
namespace, sweep what nothing reaches.

Roots, as containerd has them: images (their targets), containers (their
snapshots), unexpired leases (their resources), and content or snapshots
labelled `containerd.io/gc.root`. Edges: `containerd.io/gc.ref.content*` and
`containerd.io/gc.ref.snapshot.<snapshotter>*` labels on content, the
children named inside index and manifest JSON, and a snapshot's parent.
Active and view snapshots are never collected (only removed by their owner),
so a snapshot prepared a moment before its container is created is safe.
Blobs are shared across namespaces and freed when no namespace references them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from skiff.containerd.content import ContentStore
from skiff.containerd.metadata.db import Metadata
from skiff.containerd.metadata.snapshots import NamespacedSnapshotter
from skiff.containerd.snapshots import Kind
from skiff.errors import SkiffError

GC_ROOT = "containerd.io/gc.root"
GC_EXPIRE = "containerd.io/gc.expire"
REF_CONTENT = "containerd.io/gc.ref.content"
REF_SNAPSHOT = "containerd.io/gc.ref.snapshot."
_JSON_LIMIT = 4 << 20


@dataclass(slots=True)
class Collected:
    content_refs: int = 0
    blobs: int = 0
    snapshots: int = 0


def _expired(labels: Mapping[str, str], now: float) -> bool:
    value = labels.get(GC_EXPIRE)
    if not value:
        return False
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return when < now


def _json_children(store: ContentStore, digest: str) -> list[str]:
    """Children named by an index or manifest blob (nothing for other blobs)."""
    try:
        info = store.info(digest)
        if info.size > _JSON_LIMIT:
            return []
        data = store.read_at(digest, 0)
    except SkiffError:
        return []
    if not data.lstrip().startswith(b"{"):
        return []
    try:
        obj = json.loads(data)
    except ValueError:
        return []
    if not isinstance(obj, dict):
        return []
    out: list[str] = []
    for key in ("manifests", "layers"):
        for d in obj.get(key) or ():
            if isinstance(d, dict) and isinstance(d.get("digest"), str):
                out.append(d["digest"])
    cfg = obj.get("config")
    if isinstance(cfg, dict) and isinstance(cfg.get("digest"), str):
        out.append(cfg["digest"])
    return out


def collect(
    meta: Metadata,
    store: ContentStore,
    snapshotters: Mapping[str, NamespacedSnapshotter],
) -> Collected:
    """One full mark and sweep over every namespace; holds the writer lock."""
    done = Collected()
    now = time.time()
    with meta.lock:
        for namespace in meta.list_namespaces():
            ns = namespace.name
            content_labels = {c.digest: c.labels for c in meta.list_content(ns)}
            todo: list[str] = []
            snaps: set[tuple[str, str]] = set()
            for image in meta.list_images(ns):
                todo.append(image.target.digest)
            for c in meta.list_containers(ns):
                if c.snapshotter and c.snapshot_key:
                    snaps.add((c.snapshotter, c.snapshot_key))
            leases = {lease.id: lease for lease in meta.list_leases(ns)}
            for lease_id, res in meta.all_lease_resources(ns):
                lease = leases.get(lease_id)
                if lease is None or _expired(lease.labels, now):
                    continue
                if res.type == "content":
                    todo.append(res.id)
                elif res.type.startswith("snapshots/"):
                    snaps.add((res.type.split("/", 1)[1], res.id))
            todo.extend(d for d, labels in content_labels.items() if GC_ROOT in labels)
            infos = {name: list(sn.walk(ns)) for name, sn in snapshotters.items()}
            for name, items in infos.items():
                for info in items:
                    if info.kind != Kind.COMMITTED or GC_ROOT in info.labels:
                        snaps.add((name, info.name))
            # mark content
            seen: set[str] = set()
            while todo:
                digest = todo.pop()
                if digest in seen:
                    continue
                seen.add(digest)
                labels = content_labels.get(digest, {})
                for key, value in labels.items():
                    if key.startswith(REF_CONTENT):
                        todo.append(value)
                    elif key.startswith(REF_SNAPSHOT):
                        snaps.add(
                            (key[len(REF_SNAPSHOT) :].split(".", 1)[0].split("/", 1)[0], value)
                        )
                if digest in content_labels:
                    todo.extend(_json_children(store, digest))
            # mark snapshots: parents of what is reachable
            parents = {
                (name, info.name): info.parent for name, items in infos.items() for info in items
            }
            stack = list(snaps)
            while stack:
                name, key = stack.pop()
                parent = parents.get((name, key), "")
                if parent and (name, parent) not in snaps:
                    snaps.add((name, parent))
                    stack.append((name, parent))
            # sweep
            for digest in content_labels:
                if digest not in seen:
                    meta.remove_content(ns, digest)
                    done.content_refs += 1
            doomed = [key for key in parents if key not in snaps]
            while doomed:
                progress = False
                for name, key in list(doomed):
                    if any(
                        p == key and n == name for (n, _), p in parents.items() if (n, _) in doomed
                    ):
                        continue  # a child still waits to be removed
                    try:
                        snapshotters[name].remove(ns, key)
                        done.snapshots += 1
                    except SkiffError:
                        pass
                    doomed.remove((name, key))
                    progress = True
                if not progress:
                    break
        referenced = meta.content_digests()
        for blob in store.walk():
            if str(blob.digest) not in referenced:
                try:
                    store.delete(blob.digest)
                    done.blobs += 1
                except SkiffError:
                    pass
    return done
