"""Build tar layers entry by entry for the tests."""

from __future__ import annotations

import gzip
import io
import tarfile
from typing import Any

import zstandard

Entry = tuple[tarfile.TarInfo, bytes]


def entry(name: str, kind: str = "file", data: bytes = b"", **kw: Any) -> Entry:
    ti = tarfile.TarInfo(name)
    ti.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE,
        "char": tarfile.CHRTYPE,
        "block": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    ti.mode = kw.pop("mode", 0o755 if kind == "dir" else 0o644)
    ti.mtime = kw.pop("mtime", 1700000000)
    ti.size = len(data) if kind == "file" else 0
    for k, v in kw.items():
        setattr(ti, k, v)
    return (ti, data)


def make_tar(*entries: Entry, compression: str = "plain") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for ti, data in entries:
            tar.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw)
    if compression == "zstd":
        return zstandard.ZstdCompressor().compress(raw)
    return raw
