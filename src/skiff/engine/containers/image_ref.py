"""What a container needs of its image: the config and the rootfs chain id.

Asks the image service (daemon.services["images"]) when it offers
`resolve_for_container`; otherwise reads the image straight from the
supervisor: the image record, its manifest (the host's platform from an
index), the config blob, the chain id of its layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from skiff.engine.containers.supervisor_api import SupervisorAPI
from skiff.errors import InvalidArgument, NotFound
from skiff.oci import mediatypes as mt
from skiff.oci.digest import Digest
from skiff.oci.image import chain_ids
from skiff.oci.platform import host as host_platform
from skiff.oci.reference import parse as parse_reference


@dataclass(frozen=True, slots=True)
class ContainerImage:
    id: str  # the config digest, Docker's image ID
    name: str  # what the user asked for, normalised (or the ID)
    config: dict[str, Any]  # the image config's `config` object
    chain_id: str  # the rootfs snapshot's parent ("" for no layers)


async def resolve(api: SupervisorAPI, services: dict[str, Any], ref: str) -> ContainerImage:
    images = services.get("images")
    if images is not None and hasattr(images, "resolve"):
        found = await images.resolve(ref)
        chain_id = found.chain_id
        unpack = getattr(images, "ensure_unpacked", None)
        if unpack is not None:
            # layers pulled but not unpacked yet, or unpacked for another snapshotter
            chain_id = await unpack(found) or chain_id
        return ContainerImage(
            str(found.id), str(found.name), dict(found.config.get("config") or {}), chain_id
        )
    return await _resolve_from_supervisor(api, ref)


async def _resolve_from_supervisor(api: SupervisorAPI, ref: str) -> ContainerImage:
    if not ref:
        raise InvalidArgument("no image given")
    names = await api.image_names()
    wanted_id = ref.removeprefix("sha256:").lower()
    looks_like_id = all(c in "0123456789abcdef" for c in wanted_id) and len(wanted_id) >= 4
    candidate: str | None = None
    try:
        normalised = str(parse_reference(ref))
    except Exception:
        normalised = ""
        if not looks_like_id:
            raise InvalidArgument(f"invalid reference format: {ref}")
    for name, _ in names:
        if name == normalised:
            candidate = name
            break
    if candidate is not None:
        config_digest, config = await _config_of(api, candidate)
        return _image(config_digest, normalised, config)
    if looks_like_id:
        for name, _ in names:
            config_digest, config = await _config_of(api, name)
            if config_digest.removeprefix("sha256:").startswith(wanted_id):
                return _image(config_digest, config_digest, config)
    raise NotFound(f"No such image: {ref}")


def _image(config_digest: str, name: str, config: dict[str, Any]) -> ContainerImage:
    diff_ids = [Digest(d) for d in (config.get("rootfs") or {}).get("diff_ids") or []]
    chain = chain_ids(diff_ids)
    return ContainerImage(
        config_digest, name, dict(config.get("config") or {}), str(chain[-1]) if chain else ""
    )


async def _config_of(api: SupervisorAPI, name: str) -> tuple[str, dict[str, Any]]:
    media_type, digest, _ = await api.image_target(name)
    for _ in range(4):
        data = json.loads(await api.read_blob(digest))
        media_type = media_type or data.get("mediaType", "")
        if media_type in mt.INDEXES or "manifests" in data:
            digest = _pick_platform(data)
            media_type = ""
            continue
        config_digest = data["config"]["digest"]
        return config_digest, json.loads(await api.read_blob(config_digest))
    raise NotFound(f"No such image: {name}")


def _pick_platform(index: dict[str, Any]) -> str:
    want = host_platform()
    fallback = ""
    for m in index.get("manifests") or []:
        p = m.get("platform") or {}
        if p.get("os") == want.os and p.get("architecture") == want.architecture:
            return str(m["digest"])
        if not p and not fallback:
            fallback = str(m["digest"])
    if fallback:
        return fallback
    raise NotFound("no image for this platform")
