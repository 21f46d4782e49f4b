"""A corpus of hostile layers: each is refused with a clear error and
nothing is written outside the snapshot; through unpack, nothing is
committed either."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from tar_layers import Entry, entry, make_tar

from skiff.containerd.content import ContentStore
from skiff.containerd.snapshots import Snapshotter
from skiff.errors import FailedPrecondition, InvalidArgument
from skiff.image.layer import apply_layer
from skiff.image.rootpath import openat2_available
from skiff.image.unpack import unpack
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.image import Descriptor, Image, Manifest

# each case: (id, entries given the absolute path of a directory outside, error)
Case = tuple[str, Callable[[str], list[Entry]], str]

CASES: list[Case] = [
    (
        "dotdot",
        lambda out: [entry("../../../../../../../../" + out.lstrip("/") + "/pwned", data=b"x")],
        "escapes the root",
    ),
    ("dotdot-inner", lambda out: [entry("a/../../pwned", data=b"x")], "escapes the root"),
    ("absolute", lambda out: [entry(out + "/pwned", data=b"x")], "is absolute"),
    (
        "symlink-abs-escape",
        lambda out: [entry("evil", "symlink", linkname=out), entry("evil/pwned", data=b"x")],
        "not a directory inside the root",
    ),
    (
        "symlink-rel-escape",
        lambda out: [
            entry("evil", "symlink", linkname="../../../../../../../.." + out),
            entry("evil/pwned", data=b"x"),
        ],
        "not a directory inside the root",
    ),
    (
        "symlinked-parent-deep",
        lambda out: [
            entry("d", "dir"),
            entry("d/evil", "symlink", linkname=out),
            entry("d/evil/sub/pwned", data=b"x"),
        ],
        "not a directory inside the root",
    ),
    (
        "hardlink-dotdot",
        lambda out: [entry("hl", "hardlink", linkname="../../../../../../.." + out + "/secret")],
        "escapes the root",
    ),
    (
        "hardlink-absolute",
        lambda out: [entry("hl", "hardlink", linkname=out + "/secret")],
        "is absolute",
    ),
    (
        "hardlink-through-symlink",
        lambda out: [
            entry("evil", "symlink", linkname=out),
            entry("hl", "hardlink", linkname="evil/secret"),
        ],
        "not inside the root",
    ),
    ("whiteout-dotdot", lambda out: [entry(".wh..."), entry("x", data=b"x")], "invalid whiteout"),
    ("whiteout-dot", lambda out: [entry("a", "dir"), entry("a/.wh..")], "invalid whiteout"),
    (
        "device-behind-symlink",
        lambda out: [
            entry("evil", "symlink", linkname=out),
            entry("evil/null", "char", devmajor=1, devminor=3),
        ],
        "not a directory inside the root",
    ),
]


def _outside(tmp: Path) -> Path:
    out = tmp / "outside"
    out.mkdir()
    (out / "secret").write_bytes(b"host secret")
    return out


def _snapshot_of(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
        for p in sorted(path.rglob("*"))
    }


@pytest.mark.parametrize(
    "use_openat2", [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]
)
@pytest.mark.parametrize(("name", "build", "error"), CASES, ids=[c[0] for c in CASES])
def test_hostile_layer_is_refused(
    tmp: Path, name: str, build: Callable[[str], list[Entry]], error: str, use_openat2: bool
) -> None:
    if use_openat2 and not openat2_available():
        pytest.skip("kernel without openat2")
    out = _outside(tmp)
    before = _snapshot_of(out)
    root = tmp / "root"
    root.mkdir()
    blob = make_tar(*build(str(out)))
    with pytest.raises(InvalidArgument, match=error):
        apply_layer(str(root), io.BytesIO(blob), use_openat2=use_openat2)
    assert _snapshot_of(out) == before
    # nothing escaped anywhere else in the test's directory either
    assert sorted(os.listdir(tmp)) == ["outside", "root"]


def test_file_over_symlink_replaces_it(tmp: Path) -> None:
    """A regular file entry where a symlink to a host file stands must
    replace the symlink, not write through it; same for a device node."""
    out = _outside(tmp)
    root = tmp / "root"
    root.mkdir()
    apply_layer(
        str(root),
        io.BytesIO(
            make_tar(
                entry("x", "symlink", linkname=str(out / "secret")),
                entry("null", "char", devmajor=1, devminor=3),
            )
        ),
    )
    apply_layer(
        str(root), io.BytesIO(make_tar(entry("x", data=b"pwn"), entry("null", data=b"data")))
    )
    assert (out / "secret").read_bytes() == b"host secret"
    assert not os.path.islink(root / "x") and (root / "x").read_bytes() == b"pwn"
    assert (root / "null").read_bytes() == b"data"


def _image(store: ContentStore, *layers: bytes) -> tuple[Manifest, Image]:
    import hashlib

    descs = [
        Descriptor(media_type=mt.OCI_LAYER, digest=store.write_blob(b), size=len(b)) for b in layers
    ]
    cfg = Image(architecture="amd64", os="linux")
    cfg_json = cfg.to_json()
    cfg_json["rootfs"]["diff_ids"] = ["sha256:" + hashlib.sha256(b).hexdigest() for b in layers]
    data = json.dumps(cfg_json).encode()
    d = store.write_blob(data)
    man = Manifest(
        config=Descriptor(media_type=mt.OCI_CONFIG, digest=d, size=len(data)), layers=tuple(descs)
    )
    return man, Image.from_json(data)


def test_hostile_layer_through_unpack_commits_nothing(
    tmp: Path, store: ContentStore, snapshotter: Snapshotter
) -> None:
    out = _outside(tmp)
    good = make_tar(entry("etc", "dir"), entry("etc/ok", data=b"ok"))
    bad = make_tar(entry("evil", "symlink", linkname=str(out)), entry("evil/pwned", data=b"x"))
    man, cfg = _image(store, good, bad)
    with pytest.raises(InvalidArgument):
        unpack(store, snapshotter, man, cfg)
    assert not (out / "pwned").exists()
    # the good first layer stays committed; no trace of the bad one
    snaps = list(snapshotter.walk())
    assert [s.name for s in snaps] == [str(cfg.rootfs.diff_ids[0])]


def test_diff_id_mismatch_commits_nothing(store: ContentStore, snapshotter: Snapshotter) -> None:
    layer = make_tar(entry("f", data=b"f"))
    man, cfg = _image(store, layer)
    lying = Image(
        architecture="amd64",
        os="linux",
        rootfs=type(cfg.rootfs)(diff_ids=(Digest.from_bytes(b"something else"),)),
    )
    with pytest.raises(FailedPrecondition, match="diff id mismatch"):
        unpack(store, snapshotter, man, lying)
    assert list(snapshotter.walk()) == []
