"""Layer apply: compressions, whiteouts, and what a layer's files keep
(owners, modes, setuid, xattrs, hard links, devices)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest
from tar_layers import entry, make_tar

from skiff.image.layer import apply_layer
from skiff.image.rootpath import openat2_available

RESOLVERS = [pytest.param(True, id="openat2"), pytest.param(False, id="walk")]


def _apply(root: Path, blob: bytes, use_openat2: bool = True) -> str:
    root.mkdir(exist_ok=True)
    if use_openat2 and not openat2_available():
        pytest.skip("kernel without openat2")
    return str(apply_layer(str(root), io.BytesIO(blob), use_openat2=use_openat2).diff_id)


@pytest.mark.parametrize("compression", ["plain", "gzip", "zstd"])
def test_compressions_give_the_same_diff_id(tmp: Path, compression: str) -> None:
    plain = make_tar(entry("d", "dir"), entry("d/f", data=os.urandom(300_000)))
    blob = _recompress(plain, compression)
    diff_id = _apply(tmp / "root", blob)
    assert diff_id == "sha256:" + hashlib.sha256(plain).hexdigest()
    assert (tmp / "root/d/f").stat().st_size == 300_000


def _recompress(plain: bytes, compression: str) -> bytes:
    import gzip

    import zstandard

    if compression == "gzip":
        return gzip.compress(plain)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(plain)
    return plain


@pytest.mark.parametrize("use_openat2", RESOLVERS)
def test_metadata_is_kept(tmp: Path, use_openat2: bool) -> None:
    # a file capability (vfs_cap_data v2: cap_net_raw permitted, effective)
    fcap = "\x01\x00\x00\x02" + "\x00\x20\x00\x00" + "\x00" * 12
    xattr = {"SCHILY.xattr.user.skiff": "v\u00e9", "SCHILY.xattr.security.capability": fcap}
    blob = make_tar(
        entry("bin", "dir", mode=0o755, uid=0, gid=0),
        entry("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),
        entry("bin/sg", data=b"#!", mode=0o2711, uid=12, gid=34),
        entry("bin/cap", data=b"c", pax_headers=xattr),
        entry("bin/hl", "hardlink", linkname="bin/su"),
        entry("bin/sl", "symlink", linkname="su", uid=5, gid=6),
        entry("dev", "dir"),
        entry("dev/null", "char", devmajor=1, devminor=3, mode=0o666),
        entry("dev/loopx", "block", devmajor=7, devminor=200, mode=0o600),
        entry("dev/fifo", "fifo", mode=0o620),
        entry("tmp", "dir", mode=0o1777, mtime=1600000000),
        entry("home/u", "dir", uid=1000, gid=1000, mode=0o700),  # parent "home" implied
    )
    root = tmp / "root"
    _apply(root, blob, use_openat2)
    su = os.lstat(root / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755
    sg = os.lstat(root / "bin/sg")
    assert stat.S_IMODE(sg.st_mode) == 0o2711 and (sg.st_uid, sg.st_gid) == (12, 34)
    assert os.getxattr(root / "bin/cap", "user.skiff") == "v\u00e9".encode()
    assert os.getxattr(root / "bin/cap", "security.capability") == fcap.encode("latin-1")
    assert os.lstat(root / "bin/hl").st_ino == su.st_ino
    sl = os.lstat(root / "bin/sl")
    assert stat.S_ISLNK(sl.st_mode) and (sl.st_uid, sl.st_gid) == (5, 6)
    null = os.lstat(root / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert stat.S_ISBLK(os.lstat(root / "dev/loopx").st_mode)
    assert stat.S_ISFIFO(os.lstat(root / "dev/fifo").st_mode)
    tmpd = os.lstat(root / "tmp")
    assert stat.S_IMODE(tmpd.st_mode) == 0o1777 and int(tmpd.st_mtime) == 1600000000
    assert os.lstat(root / "home/u").st_uid == 1000
    assert int(os.lstat(root / "bin/su").st_mtime) == 1700000000


@pytest.mark.parametrize("use_openat2", RESOLVERS)
def test_whiteouts_and_opaque_dirs(tmp: Path, use_openat2: bool) -> None:
    root = tmp / "root"
    _apply(
        root,
        make_tar(
            entry("a", "dir"),
            entry("a/x", data=b"x"),
            entry("a/y", data=b"y"),
            entry("o", "dir"),
            entry("o/old", data=b"old"),
            entry("o/sub", "dir"),
            entry("o/sub/deep", data=b"d"),
            entry("gone", "dir"),
            entry("gone/f", data=b"f"),
        ),
        use_openat2,
    )
    _apply(
        root,
        make_tar(
            entry("a/.wh.x"),
            entry("o", "dir"),
            entry("o/new", data=b"new"),
            entry("o/.wh..wh..opq"),  # after an entry of this layer: must not hide it
            entry(".wh.gone"),
            entry(".wh.never-existed"),
            entry("a/y", data=b"Y"),  # a file replaced
        ),
        use_openat2,
    )
    assert sorted(os.listdir(root)) == ["a", "o"]
    assert os.listdir(root / "a") == ["y"] and (root / "a/y").read_bytes() == b"Y"
    assert os.listdir(root / "o") == ["new"]


def test_entries_replace_each_other(tmp: Path) -> None:
    root = tmp / "root"
    _apply(
        root,
        make_tar(entry("p", "dir"), entry("p/f", data=b"1"), entry("s", "symlink", linkname="p")),
    )
    # a file where a directory was, a directory where a symlink was
    _apply(
        root, make_tar(entry("p", data=b"file now"), entry("s", "dir"), entry("s/in", data=b"i"))
    )
    assert (root / "p").read_bytes() == b"file now"
    assert not os.path.islink(root / "s") and (root / "s/in").read_bytes() == b"i"


def test_symlinked_parent_inside_the_root_is_followed(tmp: Path) -> None:
    """Like /lib -> usr/lib in merged-/usr images: a later entry under the
    symlink lands where the container would see it."""
    root = tmp / "root"
    _apply(
        root,
        make_tar(entry("usr/lib", "dir"), entry("lib", "symlink", linkname="usr/lib")),
    )
    _apply(root, make_tar(entry("lib/libx.so", data=b"elf")))
    assert (root / "usr/lib/libx.so").read_bytes() == b"elf"
    assert os.path.islink(root / "lib")


def test_streams_large_layer_without_staging(tmp: Path) -> None:
    """Apply reads the blob in bounded chunks as it arrives: a reader that
    hands out little at a time still unpacks a 16 MiB file."""
    size = 16 << 20

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self.buf = io.BytesIO(data)
            self.largest = 0

        def readable(self) -> bool:
            return True

        def readinto(self, b: memoryview) -> int:  # type: ignore[override]
            n = self.buf.readinto(memoryview(b)[: 1 << 16])
            return n

        def read(self, n: int = -1) -> bytes:
            self.largest = max(self.largest, n)
            return self.buf.read(min(n if n >= 0 else 1 << 16, 1 << 16))

    data = make_tar(entry("big", data=b"\0" * size), compression="gzip")
    src = Trickle(data)
    apply_layer(str(tmp), src)  # type: ignore[arg-type]
    assert os.path.getsize(tmp / "big") == size
    assert src.largest <= 1 << 20
