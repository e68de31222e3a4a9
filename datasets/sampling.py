"""Which image each training sample shows: balanced per label, or weighted by class.

Plans are plain numpy, seeded by (seed, epoch), so any epoch can be replayed
(after a resume, say) without replaying the ones before it.

Balancing works on *buckets*. For author and title labels an image's bucket is
its label, so each label is drawn exactly `per_label` times an epoch. An image
with several genres cannot count for just one, so its bucket is its rarest
genre: rare genres are then drawn `per_label` times, and common genres come
out above their target through the images they share. `achieved_counts` says
how far off each label ends up.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.catalog import ImageRow
from datasets.config import BalanceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledImages:
    """Image paths with their labels: one each for author or title, one or more for genres."""

    paths: tuple[Path, ...]
    labels: tuple[tuple[str, ...], ...]
    kind: str

    @property
    def label_names(self) -> list[str]:
        return sorted({name for labels in self.labels for name in labels})

    @classmethod
    def from_rows(cls, rows: Sequence[ImageRow], kind: str) -> LabelledImages:
        """Rows without a label of this kind (no author, no genre) are left out, with a warning."""
        paths, labels = [], []
        for row in rows:
            found = _labels_of(row, kind)
            if found:
                paths.append(row.path)
                labels.append(found)
        if len(paths) < len(rows):
            log.warning("left out %d images that have no %s label", len(rows) - len(paths), kind)
        return cls(tuple(paths), tuple(labels), kind)


@dataclass(frozen=True)
class EpochPlan:
    image_index: np.ndarray  # int64 [n]
    weight: np.ndarray  # float32 [n]
    params: np.ndarray  # float32 [n, k], uniform in [0, 1): the augmentation draws


class BalancedSampler:
    def __init__(self, data: LabelledImages, config: BalanceConfig, usable: np.ndarray | None = None):
        self.config = config
        self.label_names = data.label_names
        index = {name: i for i, name in enumerate(self.label_names)}
        self.label_sets = [np.array(sorted(index[n] for n in labels), dtype=np.int64)
                           for labels in data.labels]
        usable = np.ones(len(data.paths), bool) if usable is None else np.asarray(usable, bool)
        self.usable = np.flatnonzero(usable)
        if len(self.usable) == 0:
            raise ValueError("no usable images to sample from")
        frequency = Counter(int(i) for img in self.usable for i in self.label_sets[img])
        # The rarest label (then the first by name) is an image's bucket.
        bucket_of = np.array([min(self.label_sets[img], key=lambda i: (frequency[int(i)], i))
                              for img in self.usable], dtype=np.int64)
        order = np.argsort(bucket_of, kind="stable")
        self.buckets, starts = np.unique(bucket_of[order], return_index=True)
        self.members = np.split(self.usable[order], starts[1:])
        sizes = np.array([len(m) for m in self.members], dtype=np.float64)
        bucket_weight = len(self.usable) / (len(self.buckets) * sizes)
        self._bucket_weight = dict(zip(self.buckets.tolist(), bucket_weight.tolist(), strict=False))
        self._image_weight = np.zeros(len(self.label_sets), np.float32)
        self._image_weight[self.usable] = [self._bucket_weight[int(b)] for b in bucket_of]
        missing = sorted(set(range(len(self.label_names))) - set(frequency))
        if missing:
            log.warning("labels with no usable image: %s", ", ".join(self.label_names[i] for i in missing))

    @property
    def epoch_size(self) -> int:
        if self.config.strategy == "balanced":
            return self.config.per_label * len(self.buckets)
        return len(self.usable)

    def plan(self, epoch: int, n_params: int) -> EpochPlan:
        rng = np.random.default_rng([self.config.seed, epoch])
        if self.config.strategy == "balanced":
            slots = np.repeat(np.arange(len(self.buckets)), self.config.per_label)
            rng.shuffle(slots)
            sizes = np.array([len(m) for m in self.members])
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            flat = np.concatenate(self.members)
            pick = offsets[slots] + np.floor(rng.random(len(slots)) * sizes[slots]).astype(np.int64)
            images = flat[pick]
            weight = np.ones(len(images), np.float32)
        else:
            images = rng.permutation(self.usable)
            weight = self._image_weight[images]
        params = rng.random((len(images), n_params), dtype=np.float32)
        return EpochPlan(images.astype(np.int64), weight, params)

    def achieved_counts(self, plan: EpochPlan) -> dict[str, float]:
        """Samples per label in `plan` (weighted, for the class-weight strategy)."""
        targets = self.targets()
        if targets.ndim == 1:
            totals = np.bincount(targets[plan.image_index], weights=plan.weight,
                                 minlength=len(self.label_names))
        else:
            totals = np.zeros(len(self.label_names))
            for start in range(0, len(plan.image_index), 65_536):
                chunk = slice(start, start + 65_536)
                totals += plan.weight[chunk] @ targets[plan.image_index[chunk]]
        return {name: round(float(t), 3) for name, t in zip(self.label_names, totals, strict=False)}

    def class_weights(self) -> dict[str, float]:
        """The weight each bucket's label gets under the class-weight strategy."""
        return {self.label_names[b]: round(float(w), 4) for b, w in self._bucket_weight.items()}

    def targets(self) -> np.ndarray:
        """Per image: the class index (author, title) or a multi-hot row (genres)."""
        if self.config.label != "genres":
            return np.array([s[0] for s in self.label_sets], dtype=np.int64)
        hot = np.zeros((len(self.label_sets), len(self.label_names)), np.float32)
        for i, labels in enumerate(self.label_sets):
            hot[i, labels] = 1.0
        return hot


def _labels_of(row: ImageRow, kind: str) -> tuple[str, ...]:
    if kind == "author":
        return (row.author,) if row.author else ()
    if kind == "title":
        return (row.title,)
    if kind == "genres":
        return row.genres
    raise ValueError(f"unknown label kind {kind!r}")
