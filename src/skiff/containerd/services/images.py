"""containerd.services.images.v1: image records (name -> target descriptor)
per namespace; deleting one lets the collector free its blobs and snapshots."""

from __future__ import annotations

from collections.abc import Sequence

from skiff.containerd.events import types as et
from skiff.containerd.events.filters import labels_lookup, parse_filters
from skiff.containerd.metadata.db import Image
from skiff.containerd.services.context import required_namespace
from skiff.containerd.services.core import Core


def _fields(image: Image) -> dict[str, str]:
    return {
        "name": image.name,
        "target.digest": image.target.digest,
        "target.mediatype": image.target.media_type,
    }


class ImagesService:
    def __init__(self, core: Core) -> None:
        self.core = core

    def get(self, name: str) -> Image:
        return self.core.meta.get_image(required_namespace(), name)

    def list(self, filters: Sequence[str] = ()) -> list[Image]:
        flt = parse_filters(filters)
        return [
            i
            for i in self.core.meta.list_images(required_namespace())
            if flt.match(labels_lookup(_fields(i), dict(i.labels)))
        ]

    def create(self, image: Image) -> Image:
        ns = required_namespace()
        created = self.core.meta.create_image(ns, image)
        self.core.publish(ns, et.ImageCreate(name=image.name))
        return created

    def update(self, image: Image, paths: Sequence[str]) -> Image:
        ns = required_namespace()
        updated = self.core.meta.update_image(ns, image, paths)
        self.core.publish(ns, et.ImageUpdate(name=image.name))
        return updated

    def delete(self, name: str, *, sync: bool = False) -> None:
        ns = required_namespace()
        self.core.meta.delete_image(ns, name)
        self.core.publish(ns, et.ImageDelete(name=name))
        # collected right away either way: it is quick, and then `sync` holds trivially
        self.core.collect_garbage()
