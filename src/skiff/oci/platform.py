"""Platforms (`os/arch/variant`) and the matcher that picks one image out
of a multi-platform index. Bottom layer, used by image pulls and unpack.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from skiff.errors import InvalidArgument

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}
# Docker writes no variant for these; treat the implied one as equal.
_DEFAULT_VARIANT = {"arm64": "v8", "arm": "v7", "amd64": "v1"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    architecture: str
    os: str
    os_version: str = ""
    os_features: Sequence[str] = field(default_factory=tuple)
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse `os[/arch[/variant]]` (`linux/arm64/v8`)."""
        parts = text.strip().lower().split("/")
        if not parts[0] or len(parts) > 3 or any(not p for p in parts):
            raise InvalidArgument(f"invalid platform {text!r}")
        os_ = parts[0]
        arch = parts[1] if len(parts) > 1 else host().architecture
        variant = parts[2] if len(parts) > 2 else ""
        return cls(os=os_, architecture=arch, variant=variant).normalized()

    def normalized(self) -> Platform:
        arch = _ARCH_ALIASES.get(self.architecture, self.architecture)
        variant = self.variant
        if arch == "arm64" and variant == "8":
            variant = "v8"
        if arch == "arm" and variant in {"5", "6", "7", "8"}:
            variant = "v" + variant
        return Platform(
            os=self.os.lower(),
            architecture=arch,
            variant=variant,
            os_version=self.os_version,
            os_features=tuple(self.os_features),
        )

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Platform:
        return cls(
            architecture=str(obj.get("architecture", "")),
            os=str(obj.get("os", "")),
            os_version=str(obj.get("os.version", "")),
            os_features=tuple(obj.get("os.features") or ()),
            variant=str(obj.get("variant", "")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.os_version:
            out["os.version"] = self.os_version
        if self.os_features:
            out["os.features"] = list(self.os_features)
        if self.variant:
            out["variant"] = self.variant
        return out


def host() -> Platform:
    """The platform this machine runs (linux/amd64 here)."""
    machine = _platform.machine().lower()
    return Platform(os="linux", architecture=_ARCH_ALIASES.get(machine, machine))


def _variant(p: Platform) -> str:
    return p.variant or _DEFAULT_VARIANT.get(p.architecture, "")


def matches(want: Platform, have: Platform) -> bool:
    """`have` can run where `want` is asked; an unset wanted variant accepts any."""
    want, have = want.normalized(), have.normalized()
    if want.os != have.os or want.architecture != have.architecture:
        return False
    if not want.variant:
        return True
    return _variant(want) == _variant(have)


T = TypeVar("T")


def best(want: Platform, candidates: Iterable[tuple[Platform, T]]) -> T | None:
    """Pick the best match: exact variant first, then the implied default
    variant, then any variant, in index order."""
    want = want.normalized()
    ranked: list[tuple[int, int, T]] = []
    for order, (plat, item) in enumerate(candidates):
        if not matches(want, plat):
            continue
        have_variant = _variant(plat.normalized())
        if want.variant and plat.normalized().variant == want.variant:
            rank = 0
        elif have_variant == _DEFAULT_VARIANT.get(want.architecture, "") or not plat.variant:
            rank = 1
        else:
            rank = 2
        ranked.append((rank, order, item))
    if not ranked:
        return None
    ranked.sort(key=lambda r: (r[0], r[1]))
    return ranked[0][2]
