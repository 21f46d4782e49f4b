"""OCI image-spec and Docker schema 2 objects as frozen dataclasses that
mirror the JSON field for field (bottom layer). JSON is parsed and written
only by the `from_json` / `to_json` edges; the bytes of a manifest are kept
by callers so that digests never depend on our serialisation.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from skiff.errors import InvalidArgument
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.platform import Platform


def _str_map(obj: Any) -> dict[str, str]:
    if not obj:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument("expected a JSON object of strings")
    return {str(k): str(v) for k, v in obj.items()}


def _obj(data: bytes | str | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    if len(data) > mt.MAX_MANIFEST_SIZE:
        raise InvalidArgument(f"{what} too large: {len(data)} bytes")
    try:
        obj = json.loads(data)
    except ValueError as e:
        raise InvalidArgument(f"invalid {what} json: {e}")
    if not isinstance(obj, dict):
        raise InvalidArgument(f"invalid {what}: not a json object")
    return obj


def dumps(obj: Mapping[str, Any]) -> bytes:
    """Canonical-ish JSON as the docker tools write it (compact, sorted)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: Sequence[str] = field(default_factory=tuple)
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Descriptor:
        try:
            size = int(obj["size"])
            digest = Digest(str(obj["digest"]))
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"invalid descriptor: {e}")
        if size < 0:
            raise InvalidArgument("invalid descriptor: negative size")
        plat = obj.get("platform")
        return cls(
            media_type=str(obj.get("mediaType", "")),
            digest=digest,
            size=size,
            urls=tuple(obj.get("urls") or ()),
            annotations=_str_map(obj.get("annotations")),
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
            artifact_type=str(obj.get("artifactType", "")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    """An OCI image manifest or a Docker schema 2 manifest (same shape)."""

    schema_version: int = 2
    media_type: str = mt.OCI_MANIFEST
    config: Descriptor
    layers: Sequence[Descriptor] = field(default_factory=tuple)
    annotations: Mapping[str, str] = field(default_factory=dict)
    subject: Descriptor | None = None
    artifact_type: str = ""

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Manifest:
        obj = _obj(data, "manifest")
        if obj.get("schemaVersion") != 2:
            raise InvalidArgument(f"unsupported manifest schemaVersion {obj.get('schemaVersion')}")
        if "config" not in obj:
            raise InvalidArgument("invalid manifest: no config")
        media_type = str(obj.get("mediaType") or mt.OCI_MANIFEST)
        if media_type not in mt.MANIFESTS:
            raise InvalidArgument(f"not an image manifest: {media_type}")
        subject = obj.get("subject")
        return cls(
            media_type=media_type,
            config=Descriptor.from_json(obj["config"]),
            layers=tuple(Descriptor.from_json(d) for d in obj.get("layers") or ()),
            annotations=_str_map(obj.get("annotations")),
            subject=Descriptor.from_json(subject) if isinstance(subject, dict) else None,
            artifact_type=str(obj.get("artifactType", "")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [d.to_json() for d in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.subject is not None:
            out["subject"] = self.subject.to_json()
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Index:
    """An OCI image index or a Docker manifest list."""

    schema_version: int = 2
    media_type: str = mt.OCI_INDEX
    manifests: Sequence[Descriptor] = field(default_factory=tuple)
    annotations: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Index:
        obj = _obj(data, "index")
        if obj.get("schemaVersion") != 2:
            raise InvalidArgument(f"unsupported index schemaVersion {obj.get('schemaVersion')}")
        media_type = str(obj.get("mediaType") or mt.OCI_INDEX)
        if media_type not in mt.INDEXES:
            raise InvalidArgument(f"not an image index: {media_type}")
        return cls(
            media_type=media_type,
            manifests=tuple(Descriptor.from_json(d) for d in obj.get("manifests") or ()),
            annotations=_str_map(obj.get("annotations")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": self.schema_version,
            "mediaType": self.media_type,
            "manifests": [d.to_json() for d in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


def sniff_media_type(data: bytes) -> str:
    """Media type of a manifest or index whose descriptor did not say."""
    obj = _obj(data, "manifest")
    if obj.get("mediaType"):
        return str(obj["mediaType"])
    if "manifests" in obj:
        return mt.OCI_INDEX
    if "config" in obj:
        return mt.OCI_MANIFEST
    raise InvalidArgument("cannot tell the media type of the manifest")


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerConfig:
    """The `config` object of an image config: how to run the image."""

    user: str = ""
    exposed_ports: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    env: Sequence[str] = field(default_factory=tuple)
    entrypoint: Sequence[str] = field(default_factory=tuple)
    cmd: Sequence[str] = field(default_factory=tuple)
    volumes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    healthcheck: Mapping[str, Any] | None = None

    _FIELDS = (
        ("user", "User"),
        ("exposed_ports", "ExposedPorts"),
        ("env", "Env"),
        ("entrypoint", "Entrypoint"),
        ("cmd", "Cmd"),
        ("volumes", "Volumes"),
        ("working_dir", "WorkingDir"),
        ("labels", "Labels"),
        ("stop_signal", "StopSignal"),
        ("healthcheck", "Healthcheck"),
    )

    @classmethod
    def from_json(cls, obj: Mapping[str, Any] | None) -> ContainerConfig:
        obj = obj or {}
        return cls(
            user=str(obj.get("User") or ""),
            exposed_ports=dict(obj.get("ExposedPorts") or {}),
            env=tuple(obj.get("Env") or ()),
            entrypoint=tuple(obj.get("Entrypoint") or ()),
            cmd=tuple(obj.get("Cmd") or ()),
            volumes=dict(obj.get("Volumes") or {}),
            working_dir=str(obj.get("WorkingDir") or ""),
            labels=_str_map(obj.get("Labels")),
            stop_signal=str(obj.get("StopSignal") or ""),
            healthcheck=obj.get("Healthcheck") or None,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for attr, key in self._FIELDS:
            value = getattr(self, attr)
            if value:
                out[key] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    created: str = ""
    created_by: str = ""
    author: str = ""
    comment: str = ""
    empty_layer: bool = False

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> History:
        return cls(
            created=str(obj.get("created") or ""),
            created_by=str(obj.get("created_by") or ""),
            author=str(obj.get("author") or ""),
            comment=str(obj.get("comment") or ""),
            empty_layer=bool(obj.get("empty_layer")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("created", "created_by", "author", "comment"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        if self.empty_layer:
            out["empty_layer"] = True
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class RootFS:
    type: str = "layers"
    diff_ids: Sequence[Digest] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True, kw_only=True)
class Image:
    """An image config (OCI `config.v1` / Docker `container.image.v1`)."""

    architecture: str
    os: str
    variant: str = ""
    os_version: str = ""
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    rootfs: RootFS = field(default_factory=RootFS)
    history: Sequence[History] = field(default_factory=tuple)

    @classmethod
    def from_json(cls, data: bytes | str | Mapping[str, Any]) -> Image:
        obj = _obj(data, "image config")
        rootfs = obj.get("rootfs") or {}
        if not isinstance(rootfs, dict):
            raise InvalidArgument("invalid image config: rootfs")
        try:
            diff_ids = tuple(Digest(str(d)) for d in rootfs.get("diff_ids") or ())
        except InvalidArgument as e:
            raise InvalidArgument(f"invalid image config: {e}")
        return cls(
            architecture=str(obj.get("architecture") or ""),
            os=str(obj.get("os") or ""),
            variant=str(obj.get("variant") or ""),
            os_version=str(obj.get("os.version") or ""),
            created=str(obj.get("created") or ""),
            author=str(obj.get("author") or ""),
            config=ContainerConfig.from_json(obj.get("config")),
            rootfs=RootFS(type=str(rootfs.get("type") or "layers"), diff_ids=diff_ids),
            history=tuple(History.from_json(h) for h in obj.get("history") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        if self.os_version:
            out["os.version"] = self.os_version
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        out["config"] = self.config.to_json()
        out["rootfs"] = {
            "type": self.rootfs.type,
            "diff_ids": [str(d) for d in self.rootfs.diff_ids],
        }
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    @property
    def platform(self) -> Platform:
        return Platform(
            os=self.os, architecture=self.architecture, variant=self.variant
        ).normalized()


def chain_ids(diff_ids: Sequence[Digest]) -> list[Digest]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    out: list[Digest] = []
    for diff_id in diff_ids:
        if not out:
            out.append(diff_id)
        else:
            out.append(Digest.from_bytes(f"{out[-1]} {diff_id}".encode()))
    return out
