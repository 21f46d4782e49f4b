"""`skiff cp`: tar archives between the host and a container's filesystem.

Part of the CLI (DESIGN.md: skiff CLI -> Engine API /containers/{id}/archive).
Follows docker cp's path rules: a destination that is an existing directory
receives the source under its own name; otherwise the source is renamed to
the destination. Extraction on the host refuses members that would land
outside the destination (tarfile's "data" filter).
"""

from __future__ import annotations

import io
import os
import posixpath
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skiff.cli.common import Cli, StatusError
from skiff.client import NotFound


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks (for tarfile's stream mode)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        while not self.buf:
            try:
                self.buf = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(b), len(self.buf))
        b[:n] = self.buf[:n]
        self.buf = self.buf[n:]
        return n


def from_container(cli: Cli, container: str, src: str, dest: str, follow: bool) -> None:
    client = cli.client
    try:
        stat, chunks = client.get_archive(container, src)
    except NotFound as e:
        raise StatusError(1, f"Error response from daemon: {e.message}") from None
    if dest == "-":
        out = cli.out_binary()
        for c in chunks:
            out.write(c)
        out.flush()
        return
    src_base = stat.get("name") or posixpath.basename(src.rstrip("/")) or "."
    dest_path = Path(dest)
    if dest_path.is_dir() and not (src.endswith("/.")):
        root, rename = dest_path, None
    elif src.endswith("/."):
        dest_path.mkdir(parents=True, exist_ok=True)
        root, rename = dest_path, None
    else:
        if dest.endswith("/") and not dest_path.exists():
            raise StatusError(1, f"destination directory {dest} must exist")
        if not dest_path.parent.is_dir():
            raise StatusError(1, f"no such directory: {dest_path.parent}")
        root, rename = dest_path.parent, dest_path.name
    reader: Any = io.BufferedReader(ChunkReader(chunks))
    with tarfile.open(fileobj=reader, mode="r|") as tar:
        for member in tar:
            if rename is not None:
                name = member.name
                if name == src_base or name.startswith(src_base + "/"):
                    member.name = rename + name[len(src_base) :]
            tar.extract(safe_member(member, root), root, numeric_owner=True)


def safe_member(member: tarfile.TarInfo, root: Path) -> tarfile.TarInfo:
    """Refuse members that would be written outside root (absolute paths, "..",
    or a path through a symlink an earlier member planted)."""
    name = member.name.lstrip("/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise StatusError(1, f"refusing to extract {member.name!r}: it leaves the destination")
    real_root = os.path.realpath(root)
    parent = os.path.realpath(os.path.join(root, *parts[:-1])) if len(parts) > 1 else real_root
    if parent != real_root and not parent.startswith(real_root + os.sep):
        raise StatusError(1, f"refusing to extract {member.name!r}: it leaves the destination")
    if member.islnk():
        link = os.path.realpath(os.path.join(root, member.linkname.lstrip("/")))
        if link != real_root and not link.startswith(real_root + os.sep):
            raise StatusError(
                1, f"refusing to extract {member.name!r}: hard link out of the destination"
            )
    if os.geteuid() != 0:
        member.uid, member.gid = os.getuid(), os.getgid()
    member.mode &= 0o7777
    return member


def to_container(cli: Cli, src: str, container: str, dest: str, follow: bool,
                 archive: bool) -> None:  # fmt: skip
    client = cli.client
    if src == "-":
        client.put_archive(container, dest, sys.stdin.buffer)
        return
    src_path = Path(src)
    if not src_path.exists() and not src_path.is_symlink():
        raise StatusError(1, f"lstat {src_path.absolute()}: no such file or directory")
    try:
        dstat = client.stat_path(container, dest)
        dest_is_dir = bool(dstat.get("mode", 0) & (1 << 31))
        dest_exists = True
    except NotFound:
        dest_is_dir, dest_exists = False, False
    copy_contents = src.endswith("/.")
    if dest_exists and dest_is_dir:
        target_dir, arcname = dest, src_path.name
    else:
        if dest.endswith("/"):
            raise StatusError(
                1, f"Error response from daemon: destination {dest} must be a directory"
            )
        target_dir, arcname = posixpath.dirname(dest.rstrip("/")) or "/", posixpath.basename(dest)
        if copy_contents:
            target_dir, arcname = dest, "."
    if copy_contents and dest_exists and dest_is_dir:
        arcname = "."

    def add_owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        if not archive:
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", dereference=follow) as tar:
        tar.add(str(src_path), arcname=arcname, filter=add_owner)
    client.put_archive(container, target_dir, buf.getvalue())
