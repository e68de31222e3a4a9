"""Train/val/test splits that keep related images together, and a leakage check.

A grouping (registered by name) says which images must share a split; groups
are then dealt to splits greedily, largest first, to the split whose share of
the group's label and of the whole set is furthest below target. The first
group of every label goes to train, so no label is only ever seen in testing.
"""

from __future__ import annotations

import logging
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets.catalog import SPLITS, Catalog, ImageRow
from datasets.config import SplitConfig
from datasets.image_hash import hamming_within
from datasets.images import ImageError, thumbnail

log = logging.getLogger(__name__)

Grouping = Callable[[Sequence[ImageRow], SplitConfig], list[str]]
_GROUPINGS: dict[str, Grouping] = {}


def register_grouping(name: str) -> Callable[[Grouping], Grouping]:
    def add(fn: Grouping) -> Grouping:
        _GROUPINGS[name] = fn
        return fn
    return add


def list_groupings() -> list[str]:
    return sorted(_GROUPINGS)


@register_grouping("title")
def group_by_title(rows: Sequence[ImageRow], config: SplitConfig) -> list[str]:
    """Every image of a title in one split: test titles are unseen."""
    return [f"title:{r.title}" for r in rows]


@register_grouping("episode-block")
def group_by_episode_block(rows: Sequence[ImageRow], config: SplitConfig) -> list[str]:
    """Runs of `block_size` consecutive images of a title stay together."""
    seen: Counter[str] = Counter()
    keys = []
    for row in rows:  # catalog order is position order within a title
        keys.append(f"block:{row.title}#{seen[row.title] // config.block_size}")
        seen[row.title] += 1
    return keys


@register_grouping("near-copy")
def group_by_near_copies(rows: Sequence[ImageRow], config: SplitConfig) -> list[str]:
    """Episode blocks, joined wherever two images of one author are near-copies (dHash within
    `near_duplicate_distance` bits and 16x16 thumbnails within the pixel tolerance), across
    titles too: a held-out image then has no near-copy with its own label in training.

    A near-copy by another author is a hard case, not a leak, and linking those chains most
    of a set into one group: the same letter in two metric-compatible fonts is a near-copy.
    For the same reason the thumbnails must also differ by at most a tenth of their own
    contrast: on a mostly blank picture (a glyph, a small icon) any two drawings of the
    same shape are within a few levels on average.
    """
    blocks = group_by_episode_block(rows, config)
    parent = {key: key for key in blocks}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    hashes = np.array([r.dhash for r in rows], np.int64)
    thumbs = _ThumbnailCache()
    for i, j, _ in hamming_within(hashes, hashes, config.near_duplicate_distance):
        if (rows[i].author or rows[i].title) != (rows[j].author or rows[j].title):
            continue
        a, b = root(blocks[i]), root(blocks[j])
        if a != b and thumbs.near_copies(rows[i].path, rows[j].path, config.near_duplicate_pixel_tolerance):
            parent[max(a, b)] = min(a, b)
    return [root(key) for key in blocks]


@register_grouping("image")
def group_by_image(rows: Sequence[ImageRow], config: SplitConfig) -> list[str]:
    """Each image alone. Neighbouring episodes of a title then land in train and test."""
    log.warning("--by image leaks: images of one title (near-identical episodes) end up "
                "in both train and test, so test scores will be optimistic")
    return [f"image:{r.id}" for r in rows]


class LeakageError(ValueError):
    """Raised under `strict` when near-duplicates cross splits; nothing is stored."""

    def __init__(self, report: SplitReport):
        self.report = report
        super().__init__(f"{len(report.leaks)} near-duplicate pairs cross splits; "
                         "split not stored (--strict)")


@dataclass(frozen=True)
class LeakPair:
    splits: tuple[str, str]
    paths: tuple[str, str]
    distance: int
    pixel_difference: float


@dataclass
class SplitReport:
    images: dict[str, int] = field(default_factory=dict)
    titles: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    excluded_titles: dict[str, int] = field(default_factory=dict)
    unseen_in_train: list[str] = field(default_factory=list)
    leaks: list[LeakPair] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{s:5s}: {self.images.get(s, 0):6d} images, {self.titles.get(s, 0):4d} titles, "
               f"{self.labels.get(s, 0):4d} labels" for s in SPLITS]
        if self.excluded_titles:
            names = ", ".join(f"{t} ({n})" for t, n in sorted(self.excluded_titles.items()))
            out.append(f"left out {len(self.excluded_titles)} titles below --min-images: {names}")
        if self.unseen_in_train:
            out.append(f"labels with no training image: {', '.join(self.unseen_in_train)}")
        out.append(f"near-duplicate pairs across splits: {len(self.leaks)}")
        out.extend(f"  {p.splits[0]}/{p.splits[1]} (dHash {p.distance} bits, pixels {p.pixel_difference}): "
                   f"{p.paths[0]} ~ {p.paths[1]}" for p in self.leaks[:10])
        if len(self.leaks) > 10:
            out.append(f"  ... and {len(self.leaks) - 10} more")
        return out


def row_label(row: ImageRow, kind: str) -> str:
    if kind == "author":
        return row.author or ""
    if kind == "title":
        return row.title
    return row.genres[0] if row.genres else ""


def assign_splits(rows: Sequence[ImageRow], config: SplitConfig) -> dict[int, str | None]:
    """Image id -> split (None for images of titles below `min_images`)."""
    if config.by not in _GROUPINGS:
        raise ValueError(f"unknown grouping {config.by!r}; choose one of {', '.join(list_groupings())}")
    per_title = Counter(r.title for r in rows)
    kept = [r for r in rows if per_title[r.title] >= config.min_images]
    assignment: dict[int, str | None] = {r.id: None for r in rows}
    if not kept:
        return assignment
    members: dict[str, list[ImageRow]] = defaultdict(list)
    for row, key in zip(kept, _GROUPINGS[config.by](kept, config), strict=False):
        members[key].append(row)
    groups = [_Group(k, Counter(row_label(r, config.label) for r in rs).most_common(1)[0][0], len(rs))
              for k, rs in sorted(members.items())]
    targets = _Targets(groups, dict(zip(SPLITS, config.fractions, strict=False)))
    rng = random.Random(config.seed)
    best: tuple[float, dict[str, str]] | None = None
    for _ in range(_tries(len(groups))):
        rng.shuffle(groups)
        dealt = _deal(groups, targets)
        cost = targets.cost(groups, dealt)
        if best is None or cost < best[0]:
            best = (cost, dealt)
    for key, split in best[1].items():
        for row in members[key]:
            assignment[row.id] = split
    return assignment


@dataclass(frozen=True)
class _Group:
    key: str
    label: str
    size: int


class _Targets:
    """Wanted image counts per split, overall and per label."""

    def __init__(self, groups: Sequence[_Group], fractions: dict[str, float]):
        self.fractions = fractions
        self.splits = [s for s in SPLITS if fractions[s] > 0]
        self.label_total: Counter[str] = Counter()
        for g in groups:
            self.label_total[g.label] += g.size
        self.total = sum(self.label_total.values())

    def need(self, label: str, split: str, label_count: Counter[str], split_count: Counter[str]) -> float:
        want = self.fractions[split]
        return ((want * self.total - split_count[split]) / self.total
                + _LABEL_WEIGHT * (want * self.label_total[label] - label_count[split])
                / self.label_total[label])

    def cost(self, groups: Sequence[_Group], dealt: dict[str, str]) -> float:
        split_count: Counter[str] = Counter()
        label_count: dict[str, Counter[str]] = defaultdict(Counter)
        for g in groups:
            split_count[dealt[g.key]] += g.size
            label_count[g.label][dealt[g.key]] += g.size
        overall = sum(abs(self.fractions[s] * self.total - split_count[s]) for s in SPLITS) / self.total
        per_label = sum(
            sum(abs(self.fractions[s] * n - label_count[label][s]) for s in SPLITS) / n
            for label, n in self.label_total.items()) / len(self.label_total)
        return overall + _LABEL_WEIGHT * per_label


# How much per-label balance counts against overall split sizes. Whole titles
# rarely divide 80/10/10 within one author, so sizes come first.
_LABEL_WEIGHT = 0.5


def _tries(groups: int) -> int:
    return max(4, min(64, 20_000 // max(groups, 1)))


def _deal(order: Sequence[_Group], targets: _Targets) -> dict[str, str]:
    """Give each group, in order, to the split furthest below its targets."""
    split_count: Counter[str] = Counter()
    label_count: dict[str, Counter[str]] = defaultdict(Counter)
    dealt: dict[str, str] = {}
    for g in order:
        counts = label_count[g.label]
        if counts["train"] == 0 and "train" in targets.splits:
            chosen = "train"
        else:
            chosen = max(targets.splits,
                         key=lambda s: targets.need(g.label, s, counts, split_count))
        dealt[g.key] = chosen
        counts[chosen] += g.size
        split_count[chosen] += g.size
    return dealt


def find_leaks(rows: Sequence[ImageRow], assignment: dict[int, str | None],
               max_distance: int, pixel_tolerance: float) -> list[LeakPair]:
    """Near-duplicate pairs in different splits.

    dHash within `max_distance` bits finds candidates cheaply; simple round or
    square icons share a dHash, so each candidate is confirmed by comparing
    16x16 thumbnails (mean absolute difference at most `pixel_tolerance`).
    """
    by_split = {s: [r for r in rows if assignment.get(r.id) == s] for s in SPLITS}
    thumbs = _ThumbnailCache()
    leaks: list[LeakPair] = []
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1:]:
            a, b = by_split[first], by_split[second]
            if not a or not b:
                continue
            candidates = hamming_within(np.array([r.dhash for r in a]), np.array([r.dhash for r in b]),
                                        max_distance)
            for x, y, bits in candidates:
                difference = thumbs.difference(a[x].path, b[y].path)
                if difference <= pixel_tolerance:
                    leaks.append(LeakPair((first, second), (str(a[x].path), str(b[y].path)), bits,
                                          round(difference, 2)))
    return sorted(leaks, key=lambda p: (p.pixel_difference, p.splits, p.paths))


class _ThumbnailCache:
    """16x16 RGB thumbnails, each file read once; unreadable files never match."""

    def __init__(self) -> None:
        self.cache: dict[Path, np.ndarray | None] = {}

    def difference(self, first: Path, second: Path) -> float:
        a, b = self.get(first), self.get(second)
        return float("inf") if a is None or b is None else float(np.abs(a - b).mean())

    def near_copies(self, first: Path, second: Path, tolerance: float,
                    share_of_contrast: float = 0.1) -> bool:
        a, b = self.get(first), self.get(second)
        if a is None or b is None:
            return False
        difference = float(np.abs(a - b).mean())
        contrast = (float(np.abs(a - a.mean()).mean()) + float(np.abs(b - b.mean()).mean())) / 2
        return difference <= min(tolerance, share_of_contrast * contrast)

    def get(self, path: Path) -> np.ndarray | None:
        if path not in self.cache:
            try:
                self.cache[path] = thumbnail(path)
            except ImageError:
                self.cache[path] = None
        return self.cache[path]


def _check_split_sizes(path, report: SplitReport, config: SplitConfig, per_title: Counter) -> None:
    """Fail (before anything is stored) when train, or a test share that was asked for, would be
    empty; warn when validation would be."""
    if len(report.excluded_titles) == len(per_title):
        raise ValueError(f"{path}: --min-images {config.min_images} leaves no title to split (the largest "
                         f"has {max(per_title.values())} images); lower --min-images")
    fractions = dict(zip(SPLITS, config.fractions, strict=False))
    kept = len(per_title) - len(report.excluded_titles)
    for split in ("train", "test"):
        if not report.images[split] and (split == "train" or fractions[split] > 0):
            asked = "/".join(f"{f:g}" for f in config.fractions)
            raise ValueError(f"{path}: --fractions {asked} would leave {split} empty ({kept} titles, "
                             f"grouped by {config.by}); give {split} a larger fraction or add titles")
    if fractions["val"] > 0 and not report.images["val"]:
        log.warning("%s: validation is empty: %d titles are too few for a validation share of %g", path,
                    kept, fractions["val"])


def split_catalog(catalog: Catalog, config: SplitConfig) -> SplitReport:
    """Assign every usable image of `catalog` a split, store it, and report on it."""
    rows = catalog.images()
    if not rows:
        raise ValueError(f"{catalog.path}: the catalog has no usable images to split")
    assignment = assign_splits(rows, config)
    report = SplitReport()
    per_title = Counter(r.title for r in rows)
    report.excluded_titles = {t: n for t, n in per_title.items() if n < config.min_images}
    for split in SPLITS:
        chosen = [r for r in rows if assignment[r.id] == split]
        report.images[split] = len(chosen)
        report.titles[split] = len({r.title for r in chosen})
        report.labels[split] = len({row_label(r, config.label) for r in chosen})
    _check_split_sizes(catalog.path, report, config, per_title)
    train_labels = {row_label(r, config.label) for r in rows if assignment[r.id] == "train"}
    report.unseen_in_train = sorted({row_label(r, config.label) for r in rows
                                     if assignment[r.id] in ("val", "test")} - train_labels)
    report.leaks = find_leaks(rows, assignment, config.near_duplicate_distance,
                              config.near_duplicate_pixel_tolerance)
    if config.strict and report.leaks:
        raise LeakageError(report)
    catalog.set_splits(assignment)
    return report
