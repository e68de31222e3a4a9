"""Settings of the data stage, one dataclass per command; the CLI's defaults come from here."""

from __future__ import annotations

from dataclasses import dataclass

from datasets.images import DEFAULT_MAX_PIXELS

DEFAULT_CATALOG = "data/catalog.sqlite"

# The webtoon study kept titles with at least 200 episode thumbnails.
THUMBNAIL_MIN_IMAGES = 200


@dataclass(frozen=True)
class ImportConfig:
    max_pixels: int = DEFAULT_MAX_PIXELS
    # Images committed per transaction: a killed import loses at most one batch.
    batch_size: int = 200
    # A picture whose channels all span at most this many levels is a flat colour.
    flat_tolerance: int = 2
    # The same file in this many titles is a site placeholder ("no image" art).
    placeholder_min_titles: int = 3
    source: str = "local"


@dataclass(frozen=True)
class SplitConfig:
    by: str = "title"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    min_images: int = THUMBNAIL_MIN_IMAGES
    label: str = "author"
    block_size: int = 20
    # dHash bits that may differ for two images to count as near-duplicates.
    near_duplicate_distance: int = 4
    # ...and whose 16x16 thumbnails differ by at most this mean level (0-255).
    near_duplicate_pixel_tolerance: float = 8.0
    strict: bool = False

    def __post_init__(self) -> None:
        if len(self.fractions) != 3 or any(f < 0 for f in self.fractions):
            raise ValueError("fractions must be three non-negative numbers (train, val, test)")
        if abs(sum(self.fractions) - 1.0) > 1e-6:
            raise ValueError(f"fractions must add up to 1, got {sum(self.fractions):g}")
        if self.min_images < 1:
            raise ValueError("min_images must be at least 1")
        if self.block_size < 1:
            raise ValueError("block_size must be at least 1")
        if self.label not in ("author", "title", "genre"):
            raise ValueError(f"label must be author, title or genre, got {self.label!r}")
