"""The shared conformance suite for snapshotters, run against both
`overlayfs` and `native` (the `snapshotter` fixture is parametrised)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from skiff.containerd.snapshots import Kind, OverlaySnapshotter, Snapshotter
from skiff.containerd.snapshots.diff import diff
from skiff.errors import AlreadyExists, FailedPrecondition, NotFound
from skiff.image.layer import apply_layer
from skiff.image.unpack import mounted


def _write(sn: Snapshotter, key: str, files: dict[str, bytes | None]) -> None:
    with mounted(sn.mounts(key)) as root:
        for name, data in files.items():
            path = os.path.join(root, name)
            if data is None:
                os.unlink(path)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)


def _tree(root: str) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            out[os.path.relpath(p, root)] = Path(p).read_bytes()
    return out


def _view_tree(sn: Snapshotter, key: str, parent: str) -> dict[str, bytes | str]:
    mounts = sn.view(key, parent)
    with mounted(mounts) as root:
        return _tree(root)


def test_prepare_commit_view_chain(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("a-active")
    _write(sn, "a-active", {"etc/hostname": b"a", "keep": b"k"})
    sn.commit("a", "a-active", {"l": "1"})
    info = sn.stat("a")
    assert info.kind == Kind.COMMITTED and info.parent == "" and info.labels == {"l": "1"}
    with pytest.raises(NotFound):
        sn.stat("a-active")

    sn.prepare("b-active", "a")
    assert sn.stat("b-active").kind == Kind.ACTIVE
    _write(sn, "b-active", {"etc/hostname": b"b", "new": b"n", "keep": None})
    sn.commit("b", "b-active")
    assert sn.stat("b").parent == "a"

    tree = _view_tree(sn, "v", "b")
    assert tree == {"etc": "dir", "etc/hostname": b"b", "new": b"n"}
    assert sn.stat("v").kind == Kind.VIEW
    # the parent is untouched by its child
    assert _view_tree(sn, "va", "a") == {"etc": "dir", "etc/hostname": b"a", "keep": b"k"}
    assert {i.name for i in sn.walk()} == {"a", "b", "v", "va"}
    assert sn.usage("a").inodes >= 3 and sn.usage("a").size > 0


def test_model_errors(snapshotter: Snapshotter) -> None:
    sn = snapshotter
    sn.prepare("p")
    with pytest.raises(AlreadyExists):
        sn.prepare("p")
    with pytest.raises(FailedPrecondition, match="not a committed"):
        sn.prepare("child-of-active", "p")
    with pytest.raises(NotFound):
        sn.prepare("child-of-nothing", "nothing")
    sn.commit("c", "p")
    with pytest.raises(FailedPrecondition, match="committed"):
        sn.mounts("c")
    sn.view("view", "c")
    with pytest.raises(FailedPrecondition, match="not active"):
        sn.commit("x", "view")
    sn.prepare("child", "c")
    with pytest.raises(FailedPrecondition, match="children"):
        sn.remove("c")
    sn.remove("child")
    sn.remove("view")
    sn.remove("c")
    assert list(sn.walk()) == []
    assert os.listdir(sn.snapshots_dir) == []
    with pytest.raises(NotFound):
        sn.remove("c")


def test_labels_update_and_reopen(snapshotter: Snapshotter, tmp: Path) -> None:
    sn = snapshotter
    sn.prepare("k", labels={"a": "1"})
    sn.update("k", {"b": "2"})
    assert sn.stat("k").labels == {"b": "2"}
    again = type(sn)(sn.root)
    try:
        assert again.stat("k").labels == {"b": "2"}
    finally:
        again.close()


def test_deep_chain(snapshotter: Snapshotter) -> None:
    """130 layers: overlay's lowerdir list no longer fits a page as absolute
    paths, so the short-path mount has to work."""
    sn = snapshotter
    parent = ""
    depth = 130
    for i in range(depth):
        key = f"layer-{i}-active"
        sn.prepare(key, parent)
        _write(sn, key, {f"f{i}": str(i).encode()})
        sn.commit(f"layer-{i}", key)
        parent = f"layer-{i}"
    sn.prepare("top", parent)
    mounts = sn.mounts("top")
    if isinstance(sn, OverlaySnapshotter):
        assert len(",".join(mounts[0].options)) > os.sysconf("SC_PAGE_SIZE")
    with mounted(mounts) as root:
        names = set(os.listdir(root))
        assert names == {f"f{i}" for i in range(depth)}
        with open(os.path.join(root, "f0"), "rb") as f:
            assert f.read() == b"0"


def test_diff_round_trip(snapshotter: Snapshotter, tmp: Path) -> None:
    """A layer computed from a snapshot's changes, applied on the parent,
    gives the snapshot's contents back (whiteouts included)."""
    sn = snapshotter
    sn.prepare("base-a")
    _write(sn, "base-a", {"a/x": b"x", "a/y": b"y", "gone": b"g", "d/deep/z": b"z"})
    sn.commit("base", "base-a")
    sn.prepare("work", "base")
    with mounted(sn.mounts("work")) as root:
        os.unlink(os.path.join(root, "gone"))
        os.unlink(os.path.join(root, "a/x"))
        with open(os.path.join(root, "a/new"), "wb") as f:
            f.write(b"new")
        os.symlink("a/new", os.path.join(root, "link"))
        os.link(os.path.join(root, "a/new"), os.path.join(root, "hard"))
        import shutil

        shutil.rmtree(os.path.join(root, "d"))
        os.makedirs(os.path.join(root, "d"))
        with open(os.path.join(root, "d/fresh"), "wb") as f:
            f.write(b"f")
        expected = _tree(root)
    buf = io.BytesIO()
    result = diff(sn, "work", buf)
    assert result.size == len(buf.getvalue())
    sn.prepare("replay", "base")
    with mounted(sn.mounts("replay")) as root:
        buf.seek(0)
        applied = apply_layer(root, buf)
        assert applied.diff_id == result.diff_id
        assert _tree(root) == expected
        st_new, st_hard = os.stat(os.path.join(root, "a/new")), os.stat(os.path.join(root, "hard"))
        assert st_new.st_ino == st_hard.st_ino
        assert os.readlink(os.path.join(root, "link")) == "a/new"
