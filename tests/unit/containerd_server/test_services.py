"""Service logic without a socket: content ingests, garbage collection,
snapshots through namespaces, events, filters, config."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from skiff.containerd import config as cfg
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Image, Target
from skiff.containerd.services.content import COMMIT, STAT, WRITE, ContentService, WriteRequest
from skiff.containerd.services.context import request_context
from skiff.containerd.services.core import Core
from skiff.containerd.services.images import ImagesService
from skiff.containerd.services.leases import LeasesService
from skiff.containerd.services.snapshots import SnapshotsService
from skiff.containerd.tasks.shim import shim_binary_name
from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from skiff.oci.digest import Digest


def _put(svc: ContentService, data: bytes, labels: dict[str, str] | None = None) -> str:
    d = str(Digest.from_bytes(data))
    out = list(
        svc.write(
            iter(
                [
                    WriteRequest(
                        action=COMMIT,
                        ref=d,
                        total=len(data),
                        expected=d,
                        data=data,
                        labels=labels or {},
                    )
                ]
            )
        )
    )
    assert out[-1].digest == d
    return d


def _image(svc: ContentService, layer: bytes = b"layer") -> tuple[str, list[str]]:
    layer_d = _put(svc, layer)
    config_d = _put(svc, b'{"rootfs":{}}', {"containerd.io/gc.ref.snapshot.overlayfs": "top"})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_d,
                "size": 1,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_d,
                    "size": 1,
                }
            ],
        }
    ).encode()
    return _put(svc, manifest), [layer_d, config_d]


def test_namespace_is_required(core: Core) -> None:
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        ContentService(core).list()
    with request_context("bad name"), pytest.raises(InvalidArgument):
        ContentService(core).list()


def test_ingest_resumes_and_blobs_are_shared(core: Core) -> None:
    data = b"x" * 5000
    d = str(Digest.from_bytes(data))
    with request_context("a"):
        svc = ContentService(core)
        list(
            svc.write(
                iter(
                    [WriteRequest(action=WRITE, ref="r", total=5000, expected=d, data=data[:1000])]
                )
            )
        )
        assert svc.status("r").offset == 1000
        assert [s.ref for s in svc.list_statuses()] == ["r"]
        out = list(
            svc.write(
                iter(
                    [
                        WriteRequest(action=STAT, ref="r"),
                        WriteRequest(
                            action=COMMIT,
                            ref="r",
                            offset=1000,
                            total=5000,
                            expected=d,
                            data=data[1000:],
                        ),
                    ]
                )
            )
        )
        assert out[0].offset == 1000 and out[1].digest == d
        with pytest.raises(NotFound):
            svc.status("r")
        assert b"".join(svc.read(d, 4000)) == data[4000:]
    with request_context("b"):
        svc = ContentService(core)
        with pytest.raises(NotFound):
            svc.info(d)  # not this namespace's
        # the bytes exist: the writer is told so, and the namespace gains a reference
        with pytest.raises(AlreadyExists):
            list(svc.write(iter([WriteRequest(action=STAT, ref="r2", expected=d)])))
        assert svc.info(d).size == 5000
        svc.delete(d)
    with request_context("a"):
        assert ContentService(core).info(d).size == 5000
        ContentService(core).delete(d)
    assert not core.content.exists(d)


def test_wrong_offset_and_corrupt_commit(core: Core) -> None:
    with request_context("a"):
        svc = ContentService(core)
        with pytest.raises(Exception, match="current offset"):
            list(svc.write(iter([WriteRequest(action=WRITE, ref="o", offset=5, data=b"x")])))
        bad = "sha256:" + "1" * 64
        with pytest.raises(FailedPrecondition, match="unexpected digest"):
            list(svc.write(iter([WriteRequest(action=COMMIT, ref="c", expected=bad, data=b"abc")])))
        assert not core.content.exists(bad)


def test_gc_follows_images_labels_and_leases(core: Core) -> None:
    with request_context("a"):
        content, images, leases = ContentService(core), ImagesService(core), LeasesService(core)
        snaps = SnapshotsService(core)
        snaps.prepare("overlayfs", "ex", "")
        snaps.commit("overlayfs", "top", "ex")
        snaps.prepare("overlayfs", "container-rw", "top")  # active: never collected
        manifest, children = _image(content)
        stray = _put(content, b"nobody wants me")
        mt = "application/vnd.oci.image.manifest.v1+json"
        images.create(Image(name="img", target=Target(media_type=mt, digest=manifest, size=1)))
        core.collect_garbage()
        assert not core.content.exists(stray)
        assert all(core.content.exists(d) for d in [manifest, *children])
        # a lease protects what it names, until it goes
        lease = leases.create("l1", {})
        from skiff.containerd.metadata.db import Resource

        kept = _put(content, b"leased")
        leases.add_resource(lease.id, Resource(kept, "content"))
        images.delete("img")
        assert core.content.exists(kept) and not core.content.exists(manifest)
        # the snapshot chain stays below an active snapshot
        assert {i.name for i in snaps.list("overlayfs")} == {"top", "container-rw"}
        snaps.remove("overlayfs", "container-rw")
        core.collect_garbage()
        assert snaps.list("overlayfs") == []
        leases.delete(lease.id)
        assert not core.content.exists(kept)


def test_expired_lease_protects_nothing(core: Core) -> None:
    with request_context("a"):
        content, leases = ContentService(core), LeasesService(core)
        from skiff.containerd.metadata.db import Resource

        lease = leases.create("old", {"containerd.io/gc.expire": "2000-01-01T00:00:00Z"})
        d = _put(content, b"short-lived")
        leases.add_resource(lease.id, Resource(d, "content"))
        core.collect_garbage()
        assert not core.content.exists(d)


def test_snapshots_are_per_namespace(core: Core) -> None:
    with request_context("a"):
        SnapshotsService(core).prepare("native", "k")
        SnapshotsService(core).commit("native", "base", "k")
        SnapshotsService(core).prepare("native", "child", "base")
        infos = {i.name: i.parent for i in SnapshotsService(core).list("native")}
        assert infos == {"base": "", "child": "base"}
    with request_context("b"):
        assert SnapshotsService(core).list("native") == []
        with pytest.raises(NotFound) as e:
            SnapshotsService(core).prepare("native", "x", "base")
        assert "a/" not in str(e.value) and "b/" not in str(e.value)
        with pytest.raises(InvalidArgument):
            SnapshotsService(core).prepare("btrfs", "x")


def test_events_and_filters(core: Core) -> None:
    sub = core.exchange.subscribe(['topic=="/images/create",namespace==a', "topic~=/containers/"])
    with request_context("a"):
        ImagesService(core).create(
            Image(name="i", target=Target(media_type="m", digest="sha256:" + "0" * 64, size=0))
        )
    with request_context("b"):
        ImagesService(core).create(
            Image(name="i", target=Target(media_type="m", digest="sha256:" + "0" * 64, size=0))
        )
    env = sub.get(timeout=1)
    assert env is not None and env.namespace == "a" and env.topic == "/images/create"
    assert sub.get(timeout=0.1) is None
    sub.close()
    f = parse_filters(['labels."x.y"==1,name!=z'])
    assert f.match(labels_lookup({"name": "n"}, {"x.y": "1"}))
    assert not f.match(labels_lookup({"name": "z"}, {"x.y": "1"}))
    with pytest.raises(InvalidArgument):
        parse_filters(["a~=("])


def test_config_round_trip(tmp_path: Path) -> None:
    assert tomllib.loads(cfg.dumps(cfg.DEFAULTS)) == cfg.DEFAULTS
    f = tmp_path / "c.toml"
    f.write_text(
        'root = "/x"\n[grpc]\nmax_workers = 3\n[runtimes."io.example.v9"]\nshim = "/bin/s"\n'
    )
    c = cfg.apply_flags(cfg.load(str(f)), address="/y.sock")
    assert c["root"] == "/x" and c["grpc"]["max_workers"] == 3
    assert c["grpc"]["address"] == "/y.sock" and cfg.ttrpc_address(c) == "/y.sock.ttrpc"
    assert cfg.shims(c)["io.example.v9"] == "/bin/s"
    assert cfg.shims(c)["io.containerd.runc.v2"] == "containerd-shim-runc-v2"
    f.write_text("not toml [")
    with pytest.raises(InvalidArgument):
        cfg.load(str(f))


def test_shim_names() -> None:
    assert shim_binary_name("io.containerd.runc.v2") == "containerd-shim-runc-v2"
    assert shim_binary_name("io.containerd.skiff.v1") == "containerd-shim-skiff-v1"
    with pytest.raises(NotFound):
        shim_binary_name("nodots")
