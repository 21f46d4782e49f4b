"""The layer apply path's own tar reader and gzip decoder, checked against
Python's tarfile and gzip on the formats real layers come in (no root)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
import zlib
from pathlib import Path

import pytest

from skiff.errors import InvalidArgument
from skiff.image.compression import decoded_chunks, decompressed
from skiff.image.layer import _Member, _Stream, _TarReader, apply_layer

LONG = "d" * 60 + "/" + "e" * 70 + "/" + "f" * 80  # > 100: long name or ustar prefix


def _tar(fmt: int, members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for ti, data in members:
            tar.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw: object
) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mtime = 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti, data


def _members(
    blob: bytes, chunk: int = 4096
) -> list[tuple[str, bytes, int, int, int, int, str, bytes]]:
    """What our reader sees; chunks cut at odd places on purpose."""
    pieces = [blob[i : i + chunk] for i in range(0, len(blob), chunk)]
    reader = _TarReader(_Stream(pieces))
    out = []
    while (m := reader.next()) is not None:
        data = _read_member(reader, m) if m.isreg() else b""
        out.append(
            (
                m.name,
                m.type,
                m.size if m.isreg() else 0,
                m.uid,
                m.gid,
                int(m.mtime),
                m.linkname,
                data,
            )
        )
    return out


def _read_member(reader: _TarReader, m: _Member) -> bytes:
    import tempfile

    with tempfile.TemporaryFile() as f:
        reader.copy_data(f.fileno(), m)
        f.seek(0)
        return f.read()


def _tarfile_members(blob: bytes) -> list[tuple[str, bytes, int, int, int, int, str, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r|") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            data = f.read() if f is not None else b""
            out.append(
                (
                    m.name,
                    m.type,
                    m.size if m.isreg() else 0,
                    m.uid,
                    m.gid,
                    int(m.mtime),
                    m.linkname,
                    data,
                )
            )
    return out


@pytest.mark.parametrize(
    "fmt",
    [
        pytest.param(tarfile.USTAR_FORMAT, id="ustar"),
        pytest.param(tarfile.GNU_FORMAT, id="gnu"),
        pytest.param(tarfile.PAX_FORMAT, id="pax"),
    ],
)
@pytest.mark.parametrize("chunk", [7, 511, 4096, 1 << 20])
def test_reader_agrees_with_tarfile(fmt: int, chunk: int) -> None:
    members = [
        _info("dir", tarfile.DIRTYPE),
        _info("dir/file", data=os.urandom(1000)),
        _info("dir/empty"),
        _info(LONG, data=b"long"),
        _info("dir/link", tarfile.SYMTYPE, linkname="file"),
        _info("dir/hard", tarfile.LNKTYPE, linkname="dir/file"),
        _info("dir/fifo", tarfile.FIFOTYPE),
        _info("dir/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _info("dir/owned", data=b"x", uid=1000, gid=2000),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        members += [
            _info("dir/big-ids", data=b"y", uid=3_000_000, gid=4_000_000),  # base-256 / pax
            _info("dir/" + "g" * 120, tarfile.SYMTYPE, linkname="t" * 150),  # long link
        ]
    blob = _tar(fmt, members)
    assert _members(blob, chunk) == _tarfile_members(blob)


def test_pax_headers_xattrs_mtime_and_global() -> None:
    ti, data = _info("f", data=b"data")
    ti.pax_headers = {"SCHILY.xattr.user.a": "v\u00e9", "mtime": "1700000000.5"}
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}
    ) as tar:
        tar.addfile(ti, io.BytesIO(data))
    reader = _TarReader(_Stream([buf.getvalue()]))
    m = reader.next()
    assert m is not None
    assert m.name == "f" and m.mtime == 1700000000.5
    assert m.pax_headers["SCHILY.xattr.user.a"] == "v\u00e9"
    assert m.pax_headers["comment"] == "global"
    assert _read_member(reader, m) == b"data"
    assert reader.next() is None


def _one_file_tar() -> bytearray:
    return bytearray(_tar(tarfile.USTAR_FORMAT, [_info("f", data=b"z" * 2000)]))


def test_bad_checksum_is_refused() -> None:
    blob = _one_file_tar()
    blob[0] ^= 1
    with pytest.raises(InvalidArgument, match="bad checksum"):
        _TarReader(_Stream([bytes(blob)])).next()


@pytest.mark.parametrize("cut", [100, 700])
def test_truncated_tar_is_refused(tmp_path: Path, cut: int) -> None:
    blob = bytes(_one_file_tar()[:cut])
    with pytest.raises(InvalidArgument, match="truncated"):
        apply_layer(str(tmp_path), io.BytesIO(blob), chown=False)


def test_empty_blob_is_refused_zero_blocks_are_an_empty_layer(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="empty file"):
        apply_layer(str(tmp_path), io.BytesIO(b""), chown=False)
    result = apply_layer(str(tmp_path), io.BytesIO(bytes(1024)), chown=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()
    assert os.listdir(tmp_path) == []


def test_sparse_files_are_refused(tmp_path: Path) -> None:
    ti, _ = _info("sparse")
    ti.type = tarfile.GNUTYPE_SPARSE
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    with pytest.raises(InvalidArgument, match="sparse"):
        apply_layer(str(tmp_path), io.BytesIO(bytes(block) + bytes(1024)), chown=False)


def test_diff_id_covers_trailing_padding(tmp_path: Path) -> None:
    blob = _tar(tarfile.PAX_FORMAT, [_info("f", data=b"abc")]) + bytes(10240)
    result = apply_layer(str(tmp_path), io.BytesIO(gzip.compress(blob)), chown=False)
    assert result.diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert result.size == len(blob)
    assert (tmp_path / "f").read_bytes() == b"abc"


# -- gzip ------------------------------------------------------------------


def _gzip_with_header(payload: bytes, flags: int, extra: bytes = b"") -> bytes:
    head = b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\0\xff"
    if flags & 4:
        head += struct.pack("<H", len(extra)) + extra
    if flags & 8:
        head += b"name.tar\0"
    if flags & 16:
        head += b"a comment\0"
    if flags & 2:
        head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = z.compress(payload) + z.flush()
    return head + body + struct.pack("<II", zlib.crc32(payload), len(payload) & 0xFFFFFFFF)


def _decode(blob: bytes, check_crc: bool = True) -> bytes:
    return b"".join(bytes(c) for c in decoded_chunks(io.BytesIO(blob), check_crc=check_crc))


@pytest.mark.parametrize("flags", [0, 2, 4, 8, 16, 2 | 4 | 8 | 16])
def test_gzip_header_fields(flags: int) -> None:
    payload = os.urandom(50_000) + bytes(300_000)
    blob = _gzip_with_header(payload, flags, extra=b"XY\x02\x00ab")
    assert _decode(blob) == payload
    assert gzip.decompress(blob) == payload  # the test's gzip is a real one


def test_gzip_members_and_zero_padding() -> None:
    a, b = os.urandom(70_000), os.urandom(1000)
    blob = gzip.compress(a) + gzip.compress(b) + bytes(512)
    assert _decode(blob) == a + b


def test_gzip_crc_checked_unless_told() -> None:
    payload = os.urandom(10_000)
    blob = bytearray(gzip.compress(payload))
    blob[-8] ^= 0xFF  # the CRC-32 in the trailer
    with pytest.raises(InvalidArgument, match="crc"):
        _decode(bytes(blob))
    reader = decompressed(io.BytesIO(bytes(blob)))
    with pytest.raises(InvalidArgument, match="crc"):
        while reader.read(4096):
            pass
    assert _decode(bytes(blob), check_crc=False) == payload


def test_gzip_length_and_garbage_are_refused() -> None:
    payload = os.urandom(10_000)
    blob = bytearray(gzip.compress(payload))
    blob[-1] ^= 0x01  # ISIZE
    with pytest.raises(InvalidArgument, match="length"):
        _decode(bytes(blob), check_crc=False)
    with pytest.raises(InvalidArgument, match="not a gzip member"):
        _decode(gzip.compress(payload) + b"this is not gzip at all")


def test_a_claimed_huge_size_reserves_little(tmp_path: Path) -> None:
    """Blocks are reserved a step ahead of the data that arrived, never
    for the size a header claims."""
    ti, _ = _info("huge")
    ti.size = 50 << 30
    blob = ti.tobuf(tarfile.GNU_FORMAT) + os.urandom(3 << 20)
    with pytest.raises(InvalidArgument, match="truncated"):
        apply_layer(str(tmp_path), io.BytesIO(blob), chown=False)
    st = os.stat(tmp_path / "huge")
    assert st.st_size == 3 << 20
    assert st.st_blocks * 512 <= 16 << 20
