"""The metadata database: namespaced records and containerd's error codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from skiff.containerd.metadata.db import (
    AnyValue,
    Container,
    Image,
    Metadata,
    Resource,
    Target,
    apply_label_paths,
)
from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

SPEC = AnyValue("types.containerd.io/opencontainers/runtime-spec/1/Spec", b"{}")
T = Target(
    media_type="application/vnd.oci.image.manifest.v1+json", digest="sha256:" + "a" * 64, size=1
)


@pytest.fixture
def meta(tmp_path: Path) -> Metadata:
    return Metadata(str(tmp_path / "m.db"))


def test_namespaces(meta: Metadata) -> None:
    meta.create_namespace("a", {"x": "1"})
    with pytest.raises(AlreadyExists):
        meta.create_namespace("a", {})
    with pytest.raises(InvalidArgument):
        meta.create_namespace("no/slash", {})
    with pytest.raises(NotFound, match="namespace b: not found"):
        meta.get_namespace("b")
    assert meta.update_namespace("a", {"y": "2"}, ["labels.y"]).labels == {"x": "1", "y": "2"}
    assert meta.update_namespace("a", {}, ["labels.x"]).labels == {"y": "2"}
    meta.create_image("a", Image(name="i", target=T))
    with pytest.raises(FailedPrecondition, match="images"):
        meta.delete_namespace("a")
    meta.delete_image("a", "i")
    meta.delete_namespace("a")
    assert meta.list_namespaces() == []


def test_images_are_per_namespace(meta: Metadata) -> None:
    meta.create_image("a", Image(name="i", target=T, labels={"k": "v"}))
    with pytest.raises(AlreadyExists):
        meta.create_image("a", Image(name="i", target=T))
    meta.create_image("b", Image(name="i", target=T))  # same name, other namespace
    with pytest.raises(NotFound):
        meta.get_image("c", "i")
    new_target = Target(media_type=T.media_type, digest="sha256:" + "b" * 64, size=2)
    updated = meta.update_image("a", Image(name="i", target=new_target), ["target"])
    assert updated.target.digest.endswith("b" * 64) and updated.labels == {"k": "v"}
    with pytest.raises(InvalidArgument):
        meta.update_image("a", Image(name="i", target=T), ["name"])
    with pytest.raises(InvalidArgument):
        meta.create_image(
            "a", Image(name="x", target=Target(media_type="m", digest="nope", size=0))
        )
    # namespaces appear when something is stored in them
    assert [n.name for n in meta.list_namespaces()] == ["a", "b"]


def test_containers(meta: Metadata) -> None:
    c = Container(
        id="c1",
        runtime="io.containerd.runc.v2",
        spec=SPEC,
        snapshotter="overlayfs",
        snapshot_key="c1",
        extensions={"e": AnyValue("t", b"\x01")},
    )
    meta.create_container("a", c)
    with pytest.raises(AlreadyExists, match="c1"):
        meta.create_container("a", c)
    with pytest.raises(InvalidArgument):
        meta.create_container("a", Container(id="c2", runtime="r"))  # no spec
    got = meta.get_container("a", "c1")
    assert got.extensions == {"e": AnyValue("t", b"\x01")} and got.spec == SPEC
    with pytest.raises(InvalidArgument, match="immutable"):
        meta.update_container("a", Container(id="c1", runtime="other", spec=SPEC), [])
    upd = meta.update_container("a", Container(id="c1", labels={"l": "1"}), ["labels.l"])
    assert upd.labels == {"l": "1"} and upd.runtime == "io.containerd.runc.v2"
    meta.delete_container("a", "c1")
    with pytest.raises(NotFound):
        meta.delete_container("a", "c1")


def test_content_refs_and_leases(meta: Metadata) -> None:
    d = "sha256:" + "c" * 64
    meta.add_content("a", d, {"x": "1"})
    meta.add_content("b", d, {})
    assert meta.remove_content("a", d) is False  # b still holds it
    assert meta.remove_content("b", d) is True
    meta.create_lease("a", "l1--x", {})
    meta.add_lease_resource("a", "l1--x", Resource(d, "content"))
    with pytest.raises(InvalidArgument):
        meta.add_lease_resource("a", "l1--x", Resource("x", "weird"))
    assert meta.list_lease_resources("a", "l1--x") == [Resource(d, "content")]
    with pytest.raises(NotFound):
        meta.list_lease_resources("b", "l1--x")
    meta.delete_lease("a", "l1--x")
    assert meta.all_lease_resources("a") == []


def test_label_paths() -> None:
    assert apply_label_paths({"a": "1", "b": "2"}, {"c": "3"}, ["labels"]) == {"c": "3"}
    assert apply_label_paths({"a": "1"}, {"b": "2"}, ["labels.b", "labels.a"]) == {"b": "2"}


def test_survives_reopen(tmp_path: Path) -> None:
    m = Metadata(str(tmp_path / "m.db"))
    m.create_image("a", Image(name="i", target=T))
    m.close()
    assert Metadata(str(tmp_path / "m.db")).get_image("a", "i").target == T
