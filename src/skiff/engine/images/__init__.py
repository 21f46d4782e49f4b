"""skiffd's images: Docker's image model over the supervisor's content store,
image records and snapshots (engine layer). See docs/engine.md, "Images"."""

from skiff.engine.images.service import ImageService, ResolvedImage

__all__ = ["ImageService", "ResolvedImage"]
