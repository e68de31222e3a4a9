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


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentations for style, not content; each is off at 0 (or flip 'none')."""

    flip: str = "horizontal"  # none, horizontal or both
    rotation_degrees: float = 10.0
    zoom: float = 0.1  # scale drawn from [1 - zoom, 1 + zoom]; above 1 crops in
    translation: float = 0.1  # shift up to this fraction of the width and height
    # Shift by whole pixels, up to this many (instead of `translation`): every pixel is
    # copied exactly, so rendering detail (anti-aliasing, 1-px outlines) survives.
    pixel_shift: int = 0
    brightness: float = 0.1  # added, on a 0-1 scale
    contrast: float = 0.1  # factor drawn from [1 - contrast, 1 + contrast]
    # Colour jitter stays off by default: colour is part of a style.
    hue: float = 0.0  # hue shift, as a fraction of the colour wheel
    saturation: float = 0.0  # factor drawn from [1 - saturation, 1 + saturation]
    # Pixels moved in from outside are white, as transparency is composited onto white.
    fill_value: float = 1.0

    def __post_init__(self) -> None:
        if self.flip not in ("none", "horizontal", "both"):
            raise ValueError(f"flip must be none, horizontal or both, got {self.flip!r}")
        for name in ("rotation_degrees", "zoom", "translation", "brightness", "contrast", "hue",
                     "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.pixel_shift < 0:
            raise ValueError("pixel_shift must not be negative")
        if self.pixel_shift and self.translation:
            raise ValueError("choose translation or pixel_shift, not both")
        if self.zoom >= 1 or self.contrast >= 1 or self.saturation >= 1:
            raise ValueError("zoom, contrast and saturation must be below 1")


LABEL_KINDS = ("author", "title", "genres")
STRATEGIES = ("balanced", "class_weight")


@dataclass(frozen=True)
class BalanceConfig:
    """The balanced training stream: which labels, how many per label, at what size."""

    label: str = "author"
    # Draws per label per epoch. (The webtoon study augmented every author to at least 10,000
    # images: configs/webtoon.yaml keeps that; frozen features need far fewer per epoch.)
    per_label: int = 500
    # balanced: every label drawn per_label times an epoch; class_weight: each
    # image once an epoch, weighted by the inverse of its label's frequency.
    strategy: str = "balanced"
    image_size: tuple[int, int] = (64, 64)  # height, width
    # 256: on stored features (the default's frozen heads) a step's fixed cost, the optimizer's
    # update of every weight, is most of it at 128. Presets that train images pin their own.
    batch_size: int = 256
    seed: int = 0
    ram_budget_mb: int = 512
    decode_threads: int = 0  # 0: one per CPU

    def __post_init__(self) -> None:
        if self.label not in LABEL_KINDS:
            raise ValueError(f"label must be one of {', '.join(LABEL_KINDS)}, got {self.label!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.per_label < 1 or self.batch_size < 1:
            raise ValueError("per_label and batch_size must be at least 1")
        if min(self.image_size) < 8:
            raise ValueError(f"image_size must be at least 8x8, got {self.image_size}")


@dataclass(frozen=True)
class FeatureConfig:
    """Where frozen features are stored and who encodes them (`datasets.features`)."""

    store: str | None = None  # the feature store's folder; None: store/ in the run's cache folder
    engine: str = "local"  # local (in-process LiteRT) or ray (an actor pool, one replica per worker)
    ray_address: str | None = None  # join this Ray cluster; None: start Ray locally
    workers: int | None = None  # local: LiteRT threads; ray: actors; None: every CPU

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise ValueError(f"features.engine must be local or ray, got {self.engine!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"features.workers must be at least 1, got {self.workers}")
