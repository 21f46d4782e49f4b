"""Content digests (`algorithm:hex`) as used by every layer of skiff.

Bottom of the layer diagram: the content store, the image code and the
registry client all name blobs with these.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from skiff.errors import InvalidArgument

#: algorithms the image-spec registers, with the length of their hex part
ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"

_ENCODED = re.compile(r"^[a-f0-9]+$")


class Digest(str):
    """A validated digest string; compares and hashes like the plain string."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        algorithm, sep, encoded = value.partition(":")
        if not sep:
            raise InvalidArgument(f"invalid digest {value!r}: missing algorithm")
        size = ALGORITHMS.get(algorithm)
        if size is None:
            raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
        if len(encoded) != size or not _ENCODED.match(encoded):
            raise InvalidArgument(f"invalid digest {value!r}: bad {algorithm} hex")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.partition(":")[0]

    @property
    def encoded(self) -> str:
        return self.partition(":")[2]

    @classmethod
    def from_bytes(cls, data: bytes, algorithm: str = CANONICAL) -> Digest:
        return cls(f"{algorithm}:{_new_hash(algorithm, data).hexdigest()}")

    def hasher(self) -> Digester:
        return Digester(self.algorithm)


def _new_hash(algorithm: str, data: bytes = b"") -> Any:
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm, data)


class Digester:
    """Incremental digest computation."""

    __slots__ = ("_h", "algorithm")

    def __init__(self, algorithm: str = CANONICAL) -> None:
        self.algorithm = algorithm
        self._h = _new_hash(algorithm)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def digest(self) -> Digest:
        return Digest(f"{self.algorithm}:{self._h.hexdigest()}")


def parse_digest(value: str) -> Digest:
    return value if isinstance(value, Digest) else Digest(value)
