"""Image references, parsed and normalised the way Docker does
(`busybox` -> `docker.io/library/busybox:latest`). Bottom layer: the engine,
the image store and the registry client all key images by these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skiff.errors import InvalidArgument
from skiff.oci.digest import Digest

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_MAX = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_NAME = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_NAME}(?:\.{_DOMAIN_NAME})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = re.compile(rf"^{_HOST}(?::[0-9]+)?$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True, slots=True)
class Reference:
    """A fully qualified reference: domain, path and a tag and/or digest."""

    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    @property
    def name(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def familiar(self) -> str:
        """The short form Docker prints (`busybox:latest`, `me/app:1`)."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix(OFFICIAL_REPO_PREFIX)
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name

    @property
    def object(self) -> str:
        """What the registry's manifest endpoint takes: the digest, else the tag."""
        return str(self.digest) if self.digest else self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> Reference:
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid tag {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, "", digest)


def parse(text: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise a reference like `docker pull` does.

    With `default_tag`, a reference without tag or digest gets `latest`.
    """
    if not text or text != text.strip():
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if _HEX64.match(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    rest, _, digest_text = text.partition("@")
    digest = None
    if digest_text:
        digest = Digest(digest_text)
    # a tag is what follows the last colon after the last slash
    tag = ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference format: bad tag {tag!r}")
    domain, sep, path = rest.partition("/")
    if not sep or not ("." in domain or ":" in domain or domain == "localhost"):
        # no registry given: the first component is part of the path
        domain, path = DEFAULT_DOMAIN, rest
    elif not _DOMAIN.match(domain):
        raise InvalidArgument(f"invalid reference format: bad registry {domain!r}")
    if domain == LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if path.lower() != path:
        raise InvalidArgument(
            f"invalid reference format: repository name ({path}) must be lowercase"
        )
    if not _PATH.match(path):
        raise InvalidArgument(f"invalid reference format: {text!r}")
    if len(domain) + 1 + len(path) > NAME_MAX:
        raise InvalidArgument("invalid reference format: repository name is too long")
    if not tag and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)
