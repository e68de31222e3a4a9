"""Training and validation data from the catalog's splits or from manifests, with every head's targets."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from datasets.catalog import Catalog, ImageRow
from datasets.config import SplitConfig
from datasets.imports import SourceError, read_manifest
from datasets.sampling import LabelledImages
from datasets.splits import assign_splits
from training.config import DataConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Vocabulary:
    """The label names of each head, fixed by the training rows."""

    authors: tuple[str, ...]
    genres: tuple[str, ...]
    titles: tuple[str, ...]

    @classmethod
    def from_rows(cls, rows: Sequence[ImageRow]) -> Vocabulary:
        with_author = all(r.author for r in rows)
        return cls(
            authors=tuple(sorted({r.author for r in rows})) if with_author else (),
            genres=tuple(sorted({g for r in rows for g in r.genres})),
            titles=tuple(sorted({r.title for r in rows})),
        )

    def targets(self, rows: Sequence[ImageRow]) -> dict[str, np.ndarray]:
        """Per-row targets: author and title as class indices, genres as multi-hot rows."""
        out: dict[str, np.ndarray] = {}
        if self.authors:
            index = {a: i for i, a in enumerate(self.authors)}
            out["author"] = np.array([index.get(r.author, -1) for r in rows], np.int64)
        if self.genres:
            hot = np.zeros((len(rows), len(self.genres)), np.float32)
            index = {g: i for i, g in enumerate(self.genres)}
            for i, row in enumerate(rows):
                hot[i, [index[g] for g in row.genres if g in index]] = 1.0
            out["genres"] = hot
        index = {t: i for i, t in enumerate(self.titles)}
        out["title"] = np.array([index.get(r.title, -1) for r in rows], np.int64)
        return out

    def title_authors(self, rows: Sequence[ImageRow]) -> list[int] | None:
        """Each title's author index (its most frequent author in `rows`); None without authors."""
        if not self.authors:
            return None
        counts: dict[str, Counter] = defaultdict(Counter)
        for row in rows:
            counts[row.title][row.author] += 1
        index = {a: i for i, a in enumerate(self.authors)}
        return [index[counts[t].most_common(1)[0][0]] for t in self.titles]


@dataclass(frozen=True)
class TrainingData:
    train_rows: tuple[ImageRow, ...]
    val_rows: tuple[ImageRow, ...]
    vocabulary: Vocabulary
    label: str
    validation: str = "given"  # where val_rows came from

    def balanced_images(self) -> LabelledImages:
        return LabelledImages.from_rows(self.train_rows, self.label)


def load_training_data(config: DataConfig) -> TrainingData:
    """Rows of train and val; val rows whose author was never trained on are left out."""
    if config.manifest:
        train = rows_from_manifest(config.manifest, config.image_root, config.allow_outside_root)
        val = (rows_from_manifest(config.val_manifest, config.image_root, config.allow_outside_root)
               if config.val_manifest else [])
    else:
        with Catalog(config.catalog) as catalog:
            train = catalog.images(split=config.train_split)
            val = catalog.images(split=config.val_split)
        if not train:
            raise ValueError(f"{config.catalog}: split {config.train_split!r} is empty "
                             "(run `python -m datasets split` first)")
    label = config.label
    usable = [r for r in train if (r.author if label == "author" else r.genres)]
    if not usable:
        source = config.manifest or config.catalog
        raise ValueError(f"{source}: no training image has a{'n' if label == 'author' else ''} "
                         f"{label} label")
    vocabulary = Vocabulary.from_rows(usable)
    if label == "author" and vocabulary.authors:
        kept_val = [r for r in val if r.author in set(vocabulary.authors)]
    else:
        kept_val = [r for r in val if set(r.genres) & set(vocabulary.genres)]
    if len(kept_val) < len(val):
        log.warning("left out %d validation images whose labels are not in training",
                    len(val) - len(kept_val))
    return TrainingData(tuple(usable), tuple(kept_val), vocabulary, label)


def rows_from_manifest(manifest: str | Path, image_root: str | None = None,
                       allow_outside_root: bool = False) -> list[ImageRow]:
    """A manifest's rows as catalog-like rows (files are checked when they are decoded)."""
    records, skipped = read_manifest(Path(manifest), image_root, allow_outside_root)
    for line in skipped:
        log.warning("%s", line)
    if not records:
        raise SourceError(f"{manifest}: no usable rows")
    return [ImageRow(id=i, path=r.path, title=r.title, author=r.author, genres=r.genres, dhash=0,
                     position=r.position, split=None, status="ok") for i, r in enumerate(records)]


# How a validation share is carved out of training rows when none is given. Runs of 5, not the
# split command's 20: near-copy links chain blocks together, and long runs then merge into a few
# giant groups that leave some authors without validation images (measured on the icon set).
CARVE_BLOCK = 5
CARVE_RULE = ("runs of 5 consecutive images of a title (manifest or catalog order) stay together, joined "
              "with every near-copy by the same author (dHash within 4 bits, 16x16 thumbnails within 8 "
              "levels and a tenth of their contrast); each author keeps its first group in training")


def carve_validation(rows: Sequence[ImageRow], dhash: np.ndarray, label: str, share: float,
                     seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of `rows` to keep for training and to move to validation (about `share` of them),
    by the groups of CARVE_RULE, so that no validation image has a near-copy in training.
    `dhash` is indexed like `rows` (the first len(rows) entries count)."""
    numbered = [replace(r, id=i, dhash=int(dhash[i])) for i, r in enumerate(rows)]
    config = SplitConfig(by="near-copy", fractions=(1 - share, share, 0.0), seed=seed, min_images=1,
                         label={"author": "author", "genres": "genre"}[label], block_size=CARVE_BLOCK)
    assignment = assign_splits(numbered, config)
    return (np.array([i for i in range(len(rows)) if assignment[i] == "train"], np.int64),
            np.array([i for i in range(len(rows)) if assignment[i] == "val"], np.int64))
