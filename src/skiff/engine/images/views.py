"""The JSON shapes of `docker images`, `docker image inspect` and `docker
history`, and the list filters, computed from what the image service holds.
Engine layer; pure functions, no supervisor access.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from skiff.errors import InvalidArgument
from skiff.oci.reference import parse as parse_reference

DANGLING_PREFIX = "moby-dangling@"
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class ImageView:
    """One image (one config digest) and every record that names it."""

    id: str  # sha256:<config digest>
    config: Mapping[str, Any]
    names: list[str] = field(default_factory=list)  # record names, dangling ones included
    targets: dict[str, str] = field(default_factory=dict)  # record name -> target digest
    size: int = 0
    layer_sizes: list[int] = field(default_factory=list)
    last_tag_time: datetime | None = None
    created_at: datetime | None = None  # of the oldest record

    @property
    def named(self) -> list[str]:
        return [n for n in self.names if not n.startswith(DANGLING_PREFIX)]

    @property
    def dangling(self) -> bool:
        return not self.named

    def repo_tags(self) -> list[str]:
        out = []
        for name in self.named:
            ref = parse_reference(name, default_tag=False)
            if ref.tag and not ref.digest:
                out.append(ref.familiar())
        return sorted(set(out))

    def repo_digests(self) -> list[str]:
        out = []
        for name in self.named:
            ref = parse_reference(name, default_tag=False)
            repo = ref.familiar().split("@", 1)[0]
            if ref.tag:
                repo = repo.rsplit(":", 1)[0]
            out.append(f"{repo}@{self.targets[name]}")
        return sorted(set(out))

    @property
    def created(self) -> int:
        return int(parse_time(self.config.get("created")) or 0)

    @property
    def created_at_precise(self) -> float:
        return parse_time(self.config.get("created")) or 0.0


def parse_time(value: Any) -> float | None:
    """RFC 3339 with up to nanoseconds (Go writes nine digits)."""
    if not isinstance(value, str) or not value:
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", value)
    if not m:
        return None
    base = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    frac = float(m.group(2)) if m.group(2) else 0.0
    return base.timestamp() + frac


def rfc3339(ts: datetime | None) -> str:
    if ts is None:
        return ZERO_TIME
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def summary(image: ImageView, containers: int = -1, shared: int = -1) -> dict[str, Any]:
    """One entry of GET /images/json."""
    labels = (image.config.get("config") or {}).get("Labels") or {}
    return {
        "Id": image.id,
        "ParentId": "",
        "RepoTags": image.repo_tags(),
        "RepoDigests": image.repo_digests(),
        "Created": image.created,
        "Size": image.size,
        "SharedSize": shared,
        "Labels": labels or None,
        "Containers": containers,
    }


_CONTAINER_CONFIG_KEYS = (
    "Hostname",
    "Domainname",
    "User",
    "AttachStdin",
    "AttachStdout",
    "AttachStderr",
    "ExposedPorts",
    "Tty",
    "OpenStdin",
    "StdinOnce",
    "Env",
    "Cmd",
    "Healthcheck",
    "ArgsEscaped",
    "Image",
    "Volumes",
    "WorkingDir",
    "Entrypoint",
    "NetworkDisabled",
    "MacAddress",
    "OnBuild",
    "Labels",
    "StopSignal",
    "StopTimeout",
    "Shell",
)


def container_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The image's container config in the shape Docker's inspect shows."""
    src = dict(config or {})
    out: dict[str, Any] = {
        "Hostname": "",
        "Domainname": "",
        "User": src.get("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "OpenStdin": False,
        "StdinOnce": False,
        "Env": src.get("Env"),
        "Cmd": src.get("Cmd"),
        "Image": "",
        "Volumes": src.get("Volumes"),
        "WorkingDir": src.get("WorkingDir", ""),
        "Entrypoint": src.get("Entrypoint"),
        "OnBuild": src.get("OnBuild"),
        "Labels": src.get("Labels"),
    }
    for key in _CONTAINER_CONFIG_KEYS:
        if key in src and key not in out:
            out[key] = src[key]
    return out


def inspect(image: ImageView, legacy: bool = False) -> dict[str, Any]:
    """GET /images/{name}/json. `legacy` (API < 1.45) adds Container and ContainerConfig,
    which older clients read (docker-compose 1.x does when it recreates a container)."""
    cfg = image.config
    rootfs = cfg.get("rootfs") or {}
    old: dict[str, Any] = {}
    if legacy:
        old = {
            "Container": cfg.get("container", ""),
            "ContainerConfig": container_config(cfg.get("container_config")),
        }
    return {
        "Id": image.id,
        "RepoTags": image.repo_tags(),
        "RepoDigests": image.repo_digests(),
        "Parent": "",
        "Comment": cfg.get("comment", ""),
        "Created": cfg.get("created") or ZERO_TIME,
        **old,
        "DockerVersion": cfg.get("docker_version", ""),
        "Author": cfg.get("author", ""),
        "Config": container_config(cfg.get("config")),
        "Architecture": cfg.get("architecture", ""),
        **({"Variant": cfg["variant"]} if cfg.get("variant") else {}),
        "Os": cfg.get("os", ""),
        **({"OsVersion": cfg["os.version"]} if cfg.get("os.version") else {}),
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Data": None, "Name": "overlayfs"},
        "RootFS": {
            "Type": rootfs.get("type", "layers"),
            "Layers": list(rootfs.get("diff_ids") or []),
        },
        "Metadata": {"LastTagTime": rfc3339(image.last_tag_time)},
    }


def history(image: ImageView) -> list[dict[str, Any]]:
    """GET /images/{name}/history: newest first, the top entry carries the ID."""
    entries = list(image.config.get("history") or [])
    sizes = iter(image.layer_sizes)
    out = []
    for h in entries:
        size = 0 if h.get("empty_layer") else next(sizes, 0)
        out.append(
            {
                "Id": "<missing>",
                "Created": int(parse_time(h.get("created")) or 0),
                "CreatedBy": h.get("created_by", ""),
                "Tags": None,
                "Size": size,
                "Comment": h.get("comment", ""),
            }
        )
    if not out:
        # an image without history still has its layers
        out = [
            {
                "Id": "<missing>",
                "Created": image.created,
                "CreatedBy": "",
                "Tags": None,
                "Size": s,
                "Comment": "",
            }
            for s in image.layer_sizes
        ] or [
            {
                "Id": "<missing>",
                "Created": image.created,
                "CreatedBy": "",
                "Tags": None,
                "Size": 0,
                "Comment": "",
            }
        ]
    out.reverse()
    out[0]["Id"] = image.id
    out[0]["Tags"] = image.repo_tags() or None
    return out


# -- filters -------------------------------------------------------------

LIST_FILTERS = {"dangling", "label", "reference", "before", "since", "until"}


def _glob(pattern: str) -> re.Pattern[str]:
    """Go's path.Match: `*` and `?` never cross a slash."""
    out = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                raise InvalidArgument(f"invalid filter pattern {pattern!r}")
            body = pattern[i + 1 : j]
            if body.startswith("^"):
                body = "^" + body[1:]
            out.append(f"[{body}]")
            i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("^" + "".join(out) + "$")


def reference_matches(image: ImageView, patterns: Iterable[str]) -> bool:
    """A familiar name or name:tag of the image matches one pattern."""
    candidates: list[str] = []
    for name in image.named:
        ref = parse_reference(name, default_tag=False)
        fam = ref.familiar()
        candidates.append(fam)
        candidates.append(fam.split("@", 1)[0].rsplit(":", 1)[0] if ref.tag else fam.split("@")[0])
        candidates.append(str(ref))
    for pattern in patterns:
        rx = _glob(pattern)
        if any(rx.match(c) for c in candidates):
            return True
    return False


def label_matches(labels: Mapping[str, str], wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key.endswith("!"):
        return labels.get(key[:-1]) != value
    if not sep:
        return key in labels
    return labels.get(key) == value


def parse_bool_filter(values: set[str], name: str) -> bool:
    if len(values) != 1:
        raise InvalidArgument(f"invalid filter '{name}': expected one value")
    value = next(iter(values)).lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{name}={value}'")


def apply_filters(
    images: Sequence[ImageView],
    filters: Mapping[str, set[str]],
    lookup: Any,
) -> list[ImageView]:
    """`lookup(name_or_id) -> ImageView` resolves before/since."""
    for key in filters:
        if key not in LIST_FILTERS:
            raise InvalidArgument(f"invalid filter '{key}'")
    out = list(images)
    if filters.get("dangling"):
        want = parse_bool_filter(filters["dangling"], "dangling")
        out = [i for i in out if i.dangling == want]
    if filters.get("label"):
        out = [
            i
            for i in out
            if all(
                label_matches((i.config.get("config") or {}).get("Labels") or {}, w)
                for w in filters["label"]
            )
        ]
    if filters.get("reference"):
        out = [i for i in out if reference_matches(i, filters["reference"])]
    for key in ("before", "since"):
        for value in filters.get(key, ()):
            pivot = lookup(value).created_at_precise
            if key == "before":
                out = [i for i in out if i.created_at_precise < pivot]
            else:
                out = [i for i in out if i.created_at_precise > pivot]
    for value in filters.get("until", ()):
        try:
            limit = float(value)
        except ValueError:
            limit = parse_time(value) or 0
        out = [i for i in out if i.created <= limit]
    return out
