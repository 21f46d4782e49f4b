"""The supervisor's content store seen through the content service: the
duck-typed store that skiff.image's pull, push, import and export work on
(exists / info / open / read_all / writer / write_blob), over gRPC.

A writer is one Write stream: STAT opens (or resumes) the ingest named by
its ref, WRITE appends at the current offset, COMMIT verifies and publishes.
Closing without COMMIT leaves the ingest for a later writer to resume.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from skiff.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from skiff.oci.digest import Digest

if TYPE_CHECKING:  # not at run time: skiff-ctr run reads content with the lean client
    from skiff.containerd.client.core import Client
    from skiff.containerd.client.types import ContentInfo


def _pb() -> Any:
    """The generated content messages, imported only by a writer (reads need none)."""
    from skiff.api.gen.containerd.services.content.v1 import content_pb2

    return content_pb2


_CHUNK = 1 << 20  # one WRITE per MiB keeps well under gRPC's message limit


class BlobReader(io.RawIOBase):
    """A blob read as a stream of Read responses (for uploads and layer apply)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if not self._buf:
            self._buf = next(self._chunks, b"")
            if not self._buf:
                return 0
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class RemoteWriter:
    """One ingest, written through a content Write stream."""

    def __init__(
        self, client: Client, ref: str, total: int = 0, expected: Digest | None = None
    ) -> None:
        self.ref = ref
        self.total = total
        self.expected = expected
        self.data_path = ""  # no local file: pull's streaming unpack is not used remotely
        self._stream = client.open_write_stream()
        try:
            r = self._stream.call(
                _pb().WriteContentRequest(
                    action=_pb().STAT,
                    ref=ref,
                    total=total,
                    expected=str(expected or ""),
                )
            )
        except BaseException:
            self._stream.close()
            raise
        self.offset = int(r.offset)

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: bytes | memoryview) -> int:
        view = memoryview(data)
        for start in range(0, len(view), _CHUNK):
            chunk = bytes(view[start : start + _CHUNK])
            r = self._stream.call(
                _pb().WriteContentRequest(
                    action=_pb().WRITE, ref=self.ref, offset=self.offset, data=chunk
                )
            )
            if int(r.offset) != self.offset + len(chunk):
                raise FailedPrecondition(
                    f"ingest {self.ref}: server at offset {r.offset}, expected {self.offset + len(chunk)}"
                )
            self.offset = int(r.offset)
        return len(view)

    def truncate(self, size: int = 0) -> None:
        # the service truncates when a write names offset 0 while the ingest has bytes
        if size != 0:
            raise InvalidArgument("the content service truncates only to 0")
        r = self._stream.call(_pb().WriteContentRequest(action=_pb().WRITE, ref=self.ref, offset=0))
        self.offset = int(r.offset)

    def commit(
        self,
        size: int = 0,
        expected: Digest | str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Digest:
        exp = str(expected or self.expected or "")
        r = self._stream.call(
            _pb().WriteContentRequest(
                action=_pb().COMMIT,
                ref=self.ref,
                offset=self.offset,
                total=size or self.total,
                expected=exp,
                labels=dict(labels or {}),
            )
        )
        self.close()
        return Digest(str(r.digest) or exp)

    def close(self) -> None:
        self._stream.close()


class RemoteContentStore:
    """skiff.image's content-store duck type, backed by the content service."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def info(self, digest: Digest | str) -> ContentInfo:
        return self.client.content_info(str(digest))

    def exists(self, digest: Digest | str) -> bool:
        try:
            self.client.content_info(str(digest))
        except NotFound:
            return False
        return True

    def open(self, digest: Digest | str) -> io.BufferedReader:
        self.client.content_info(str(digest))  # NotFound now rather than at the first read
        return io.BufferedReader(BlobReader(self.client.read_content(str(digest))), _CHUNK)

    def read_all(self, digest: Digest | str, limit: int | None = None) -> bytes:
        if limit is not None and self.info(digest).size > limit:
            raise InvalidArgument(f"blob {digest} larger than {limit} bytes")
        return b"".join(self.client.read_content(str(digest)))

    def writer(
        self, ref: str, *, total: int = 0, expected: Digest | str | None = None
    ) -> RemoteWriter:
        return RemoteWriter(self.client, ref, total, Digest(expected) if expected else None)

    def write_blob(
        self,
        data: bytes,
        expected: Digest | str | None = None,
        ref: str = "",
        labels: Mapping[str, str] | None = None,
    ) -> Digest:
        exp = Digest(expected) if expected else Digest.from_bytes(data)
        try:
            w = self.writer(ref or f"blob-{exp}", total=len(data), expected=exp)
        except AlreadyExists:
            return exp
        with w:
            if w.offset:
                w.truncate(0)
            w.write(data)
            try:
                w.commit(len(data), exp, labels)
            except AlreadyExists:
                pass
        return exp

    def delete(self, digest: Digest | str) -> None:
        self.client.delete_content(str(digest))
