"""Counts per author, title and genre, imbalance, a bar chart, and CSV export of a split."""

from __future__ import annotations

import csv
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from datasets.catalog import SPLITS, Catalog, ImageRow
from datasets.imports import MANIFEST_COLUMNS, TEXT_COLUMN

_NO_AUTHOR = "(no author)"


@dataclass
class CatalogStats:
    images: int = 0
    placeholders: int = 0
    authors: dict[str, int] = field(default_factory=dict)
    titles: dict[str, int] = field(default_factory=dict)
    genres: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    author_imbalance: float | None = None
    title_imbalance: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.images} images, {len(self.titles)} titles, {len(self.authors)} authors, "
               f"{len(self.genres)} genres; {self.placeholders} placeholder images left out",
               "splits: " + ", ".join(f"{k} {v}" for k, v in self.splits.items()),
               f"imbalance (largest/smallest): authors {_ratio(self.author_imbalance)}, "
               f"titles {_ratio(self.title_imbalance)}"]
        for name, counts in (("author", self.authors), ("title", self.titles), ("genre", self.genres)):
            if not counts:
                continue
            out.append(f"\n{name:32s} images")
            out.extend(f"{key[:32]:32s} {n:6d}" for key, n in counts.items())
        return out


def compute_stats(catalog: Catalog, split: str | None = None) -> CatalogStats:
    rows = catalog.images(split=split)
    stats = CatalogStats(images=len(rows))
    stats.placeholders = catalog.count_placeholders()
    stats.authors = _ranked(Counter(r.author or _NO_AUTHOR for r in rows))
    stats.titles = _ranked(Counter(r.title for r in rows))
    stats.genres = _ranked(Counter(g for r in rows for g in r.genres))
    split_counts = Counter(r.split or "none" for r in rows)
    stats.splits = {s: split_counts[s] for s in (*SPLITS, "none") if split_counts[s]}
    stats.author_imbalance = _imbalance(stats.authors)
    stats.title_imbalance = _imbalance(stats.titles)
    return stats


def plot_stats(stats: CatalogStats, out: str | os.PathLike, top: int = 40) -> Path:
    """A PNG with one horizontal bar chart each for authors, titles and genres."""
    # Figure without pyplot: no global backend state, safe on a headless machine.
    from matplotlib.figure import Figure

    panels = [(name, counts) for name, counts in
              (("authors", stats.authors), ("titles", stats.titles), ("genres", stats.genres)) if counts]
    tallest = max((min(len(c), top) for _, c in panels), default=1)
    fig = Figure(figsize=(5.5 * max(len(panels), 1), 1.5 + 0.22 * tallest), layout="constrained")
    for i, (name, counts) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        items = list(counts.items())[:top][::-1]
        ax.barh([k[:28] for k, _ in items], [v for _, v in items], color="#4C72B0")
        shown = f" (top {top} of {len(counts)})" if len(counts) > top else ""
        ax.set_title(f"images per {name[:-1]}{shown}")
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel("images")
    fig.suptitle(f"{stats.images} images · author imbalance {_ratio(stats.author_imbalance)}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, out)
    return out


def export_split(catalog: Catalog, split: str, out: str | os.PathLike) -> int:
    """Write the split as a manifest CSV (image paths relative to the CSV); returns row count."""
    rows = catalog.images(split=split)
    if not rows:
        raise ValueError(f"{catalog.path}: split {split!r} is empty (run `python -m datasets split` first)")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_manifest(rows, out, catalog.title_texts())
    return len(rows)


def write_manifest(rows: Sequence[ImageRow], out: Path, texts: dict[str, str] | None = None) -> None:
    """The rows as a manifest; with a `text` column (each row its title's text) when any title has one."""
    base = out.resolve().parent
    texts = {t: texts[t] for t in {r.title for r in rows} if t in texts} if texts else {}
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(MANIFEST_COLUMNS + ((TEXT_COLUMN,) if texts else ()))
        for r in rows:
            row = [os.path.relpath(r.path, base), r.title, r.author or "", "|".join(r.genres)]
            writer.writerow(row + ([texts.get(r.title, "")] if texts else []))
    os.replace(tmp, out)  # readers never see half a manifest


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _imbalance(counts: dict[str, int]) -> float | None:
    return max(counts.values()) / min(counts.values()) if counts else None


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}x"
