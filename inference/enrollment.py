"""Adding titles and authors to a bundle without retraining: encode their images with the
bundle's own LiteRT model, extend its title index and exemplars, and calibrate the
nearest-title classifier that names their authors again (inference/author_prototypes.py).

Safe updates: new thumbnails and a new title index file (`title_index-<digest>.npz`) are
written first; then bundle.json, which names the index, is replaced atomically: the commit
point. A kill at any moment leaves the old bundle or the new one, never a mix; files the
committed bundle.json no longer names are deleted afterwards (a kill before that leaves only
unreferenced files, which the next enroll removes). A lock file keeps two enrolls apart, and
a running `StyleFinder` (the web app) reloads the titles when bundle.json changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.images import ImageError, load_resized
from datasets.prefetch import prefetched
from inference.author_prototypes import calibrate
from inference.bundle import (
    INDEX,
    MANIFEST,
    THUMBNAILS_PER_TITLE,
    Bundle,
    BundleError,
    EnrolledTitle,
    TitleEntry,
    write_thumbnail,
)
from inference.look_alikes import LookAlike, look_alikes
from inference.query import StyleFinder
from inference.search import unit_rows
from inference.title_exemplars import TitleExemplars

log = logging.getLogger(__name__)

BATCH = 32
LOCK = ".enroll.lock"
MODEL_CARD = "MODEL_CARD.md"
CARD_SECTION = "## Enrolled titles"
LOOK_ALIKES_SHOWN = 5  # the most alike pairs in the summary; an enroll of mixed titles finds many


@dataclass(frozen=True)
class EnrollImage:
    path: Path
    title: str
    author: str | None
    genres: tuple[str, ...] = ()
    origin: str = ""  # where the row came from (manifest line), for error lines


@dataclass
class EnrollReport:
    added: list[str] = field(default_factory=list)  # titles new to the bundle
    updated: list[str] = field(default_factory=list)  # titles it had
    new_authors: list[str] = field(default_factory=list)
    images: int = 0
    rejected: list[str] = field(default_factory=list)  # one line per image or title left out
    look_alikes: list[LookAlike] = field(default_factory=list)  # touched titles hard to tell apart
    unexamined: int = 0  # touched titles the look-alike check had no budget left for

    def summary(self) -> str:
        lines = [f"enrolled {self.images} images: {len(self.added)} new titles, {len(self.updated)} updated, "
                 f"{len(self.new_authors)} new authors; rejected {len(self.rejected)}"]
        lines += [pair.describe() for pair in self.look_alikes[:LOOK_ALIKES_SHOWN]]
        if len(self.look_alikes) > LOOK_ALIKES_SHOWN:
            lines.append(f"look-alikes: {len(self.look_alikes) - LOOK_ALIKES_SHOWN} more pairs, less alike")
        if self.unexamined:
            lines.append(f"look-alikes: {self.unexamined} of the titles enrolled were not examined "
                         "(the check's budget was spent on the others)")
        return "\n".join(lines)


@dataclass
class _Title:
    author: str | None
    total: np.ndarray
    exemplars: list[np.ndarray] = field(default_factory=list)  # projected into the exemplar space
    count: int = 0
    thumbnails: list[Path] = field(default_factory=list)
    genres: Counter = field(default_factory=Counter)


def enroll(bundle_dir: str | os.PathLike, images: Sequence[EnrollImage], source: str, progress: bool = True,
           finder: StyleFinder | None = None, store: str | os.PathLike | None = None,
           catalog_mark: tuple[str, int] | None = None) -> EnrollReport:
    """Encode `images` with the bundle's model and add or update their titles in the bundle;
    `store`: a feature store folder the outputs are read from where it has them, and kept in;
    `catalog_mark`: (catalog, highest image id) recorded with the commit, for `--new`."""
    bundle_dir = Path(bundle_dir)
    report = EnrollReport()
    with _locked(bundle_dir):
        finder = finder or StyleFinder(bundle_dir)
        finder.refresh()
        bundle = finder.bundle
        titles = _encode(finder, images, report, progress, store)
        if not titles:
            return report
        known = {t.name: i for i, t in enumerate(bundle.titles)}
        entries, embeddings = list(bundle.titles), bundle.title_embeddings.copy()
        exemplars = bundle.title_exemplars
        enrolled = {e.title: e for e in bundle.enrolled}
        enrolled_authors = list(bundle.enrolled_authors)
        added_exemplars: list[np.ndarray] = []
        added_rows: list[np.ndarray] = []
        date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for name, found in titles.items():
            row = known.get(name)
            old = entries[row] if row is not None else None
            if old is not None and old.author and found.author and old.author != found.author:
                report.rejected.append(f"title {name!r}: belongs to author {old.author!r} in the bundle, "
                                       f"not {found.author!r}; title left out")
                continue
            author = found.author or (old.author if old else None)
            if author and author not in bundle.authors and author not in enrolled_authors:
                enrolled_authors.append(author)
                report.new_authors.append(author)
            thumbs = _write_thumbnails(bundle_dir, name, found.thumbnails)
            genres = tuple(sorted(g for g, n in found.genres.items() if n * 2 >= found.count))
            added_exemplars.append(np.stack(found.exemplars))
            added_rows.append(np.full(found.count, len(entries) if old is None else row))
            if old is None:
                embeddings = np.vstack([embeddings, unit_rows(found.total)[None]])
                entries.append(TitleEntry(name, author, genres, tuple(thumbs), found.count))
                report.added.append(name)
            else:  # the stored mean, weighted by its images, with the new images
                embeddings[row] = unit_rows(embeddings[row] * old.images + found.total)
                entries[row] = TitleEntry(name, author, tuple(sorted(set(old.genres) | set(genres))),
                                          old.thumbnails if len(old.thumbnails) >= 3 else tuple(thumbs),
                                          old.images + found.count)
                report.updated.append(name)
            previous = enrolled.get(name)
            enrolled[name] = EnrolledTitle(name, author, source, date,
                                           found.count + (previous.images if previous else 0))
            report.images += found.count
        if added_exemplars:  # at once: each extension copies every exemplar (a million: 0.25 s)
            exemplars = exemplars.extended(np.concatenate(added_exemplars), np.concatenate(added_rows))
        if catalog_mark:
            bundle = replace(bundle, catalog_marks={**bundle.catalog_marks, catalog_mark[0]: catalog_mark[1]})
        updated = _commit(bundle, entries, embeddings, exemplars, enrolled_authors, list(enrolled.values()))
        names = [t.name for t in updated.titles]
        row_of = {name: row for row, name in enumerate(names)}
        touched = [row_of[name] for name in report.added + report.updated]
        report.look_alikes, report.unexamined = look_alikes(updated.title_exemplars, names, touched)
    return report


def remove_title(bundle_dir: str | os.PathLike, title: str) -> Bundle:
    """Take `title` out of the bundle's index (its author too, if enrolled and left with none)."""
    bundle_dir = Path(bundle_dir)
    with _locked(bundle_dir):
        bundle = Bundle.load(bundle_dir)
        rows = [i for i, t in enumerate(bundle.titles) if t.name == title]
        if not rows:
            raise BundleError(f"{bundle_dir}: no title {title!r} to remove")
        keep = [i for i in range(len(bundle.titles)) if i not in rows]
        if not keep:
            raise BundleError(f"{bundle_dir}: {title!r} is the bundle's only title; it cannot be removed")
        entries = [bundle.titles[i] for i in keep]
        remaining = {t.author for t in entries}
        authors = [a for a in bundle.enrolled_authors if a in remaining]
        return _commit(bundle, entries, bundle.title_embeddings[keep], bundle.title_exemplars.kept(keep),
                       authors, [e for e in bundle.enrolled if e.title != title])


def _encode(finder: StyleFinder, images: Sequence[EnrollImage], report: EnrollReport, progress: bool,
            store: str | os.PathLike | None = None) -> dict[str, _Title]:
    titles: dict[str, _Title] = {}
    batches = _stored_batches(finder, images, report, store, progress) if store else \
        _encoded_batches(finder, images, report, progress)
    for batch, outputs in batches:
        vectors = finder.exemplar_vectors(finder.bundle, outputs)
        for image, embedding, vector in zip(batch, outputs["embedding"], vectors, strict=True):
            found = titles.setdefault(image.title, _Title(image.author, np.zeros_like(embedding)))
            found.total = found.total + unit_rows(embedding)
            found.exemplars.append(vector)
            found.count += 1
            found.genres.update(image.genres)
            if len(found.thumbnails) < THUMBNAILS_PER_TITLE:
                found.thumbnails.append(image.path)
    return titles


def _reject(report: EnrollReport, image: EnrollImage, problem: str) -> None:
    named = image.origin and image.origin != str(image.path)  # a manifest line, not the path
    report.rejected.append(f"{image.origin}: {problem}" if named else problem)


def _encoded_batches(finder: StyleFinder, images: Sequence[EnrollImage], report: EnrollReport, progress: bool
                     ) -> Iterator[tuple[list[EnrollImage], dict[str, np.ndarray]]]:
    size = finder.bundle.image_size

    def decode(image: EnrollImage) -> tuple[EnrollImage, np.ndarray | None, str]:
        try:
            return image, load_resized(image.path, size, finder.max_pixels), ""
        except ImageError as err:
            return image, None, str(err)

    batch, pixels = [], []
    # Threads decode the next images while the network runs on this batch.
    with tqdm(total=len(images), desc="enroll", unit="img", disable=not progress) as bar:
        for image, decoded, problem in prefetched(decode, images):
            if decoded is None:
                _reject(report, image, problem)
                bar.update(1)
                continue
            batch.append(image)
            pixels.append(decoded)
            if len(batch) == BATCH:
                yield batch, finder.encode(np.stack(pixels))
                bar.update(len(batch))
                batch, pixels = [], []
        if batch:
            yield batch, finder.encode(np.stack(pixels))
            bar.update(len(batch))


def _stored_batches(finder: StyleFinder, images: Sequence[EnrollImage], report: EnrollReport,
                    store: str | os.PathLike, progress: bool
                    ) -> Iterator[tuple[list[EnrollImage], dict[str, np.ndarray]]]:
    """The outputs from a feature store, encoding there only what it lacks."""
    from inference.stored_outputs import StoredOutputs

    stored = StoredOutputs(finder, store, progress)
    try:
        for start, outputs, problems in stored.chunks([image.path for image in images]):
            good = [i for i, problem in enumerate(problems) if problem is None]
            for i, problem in enumerate(problems):
                if problem is not None:
                    _reject(report, images[start + i], problem)
            if good:
                rows = {name: value[good] for name, value in outputs.items()}
                yield [images[start + i] for i in good], rows
    finally:
        stored.close()


def _commit(bundle: Bundle, entries: list[TitleEntry], embeddings: np.ndarray, exemplars: TitleExemplars,
            enrolled_authors: list[str], enrolled: list[EnrolledTitle]) -> Bundle:
    digest = hashlib.sha256(np.ascontiguousarray(embeddings, np.float32).tobytes())
    digest.update(np.ascontiguousarray(exemplars.vectors, np.float32).tobytes())
    digest.update("\n".join(t.name for t in entries).encode())
    updated = replace(bundle, titles=entries, title_embeddings=embeddings.astype(np.float32),
                      exemplars=exemplars, enrolled_authors=enrolled_authors, enrolled=enrolled,
                      title_index=f"{Path(INDEX).stem}-{digest.hexdigest()[:12]}.npz")
    # The enrolled titles change what the classifier must tell apart: calibrate it again.
    temperature, bias = calibrate(exemplars, [t.author for t in entries], updated.enrolled_mask)
    if temperature:
        updated = replace(updated, prototype_temperature=temperature, enrolled_bias=bias)
    updated.save()  # the index, then bundle.json: the commit point
    _remove_unreferenced(updated)
    _write_model_card(updated)
    return updated


def _write_thumbnails(bundle_dir: Path, title: str, sources: list[Path]) -> list[str]:
    stem = hashlib.sha256(title.encode()).hexdigest()[:10]
    names = []
    for k, source in enumerate(sources):
        name = f"thumbs/enrolled-{stem}-{os.getpid()}-{k}.png"
        write_thumbnail(source, bundle_dir / name)
        names.append(name)
    return names


def _remove_unreferenced(bundle: Bundle) -> None:
    referenced = {t for entry in bundle.titles for t in entry.thumbnails}
    for path in (bundle.path / "thumbs").glob("enrolled-*.png"):
        if f"thumbs/{path.name}" not in referenced:
            path.unlink(missing_ok=True)
    for path in bundle.path.glob(f"{Path(INDEX).stem}*.npz"):
        if path.name != bundle.title_index:
            path.unlink(missing_ok=True)


def _write_model_card(bundle: Bundle) -> None:
    card = bundle.path / MODEL_CARD
    text = card.read_text() if card.is_file() else f"# Model card: {bundle.name}\n"
    text = re.split(rf"\n{re.escape(CARD_SECTION)}\n", text)[0].rstrip("\n") + "\n"
    if bundle.enrolled:
        lines = [f"- {e.title} by {e.author or 'unknown'}: {e.images} images from {e.source}, {e.date}"
                 for e in bundle.enrolled]
        text += (f"\n{CARD_SECTION}\nAdded with `python -m inference.enroll`, without retraining; their "
                 "authors are named by the nearest-title classifier (README).\n\n"
                 + "\n".join(lines) + "\n")
    tmp = card.with_name(card.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, card)


@contextmanager
def _locked(bundle_dir: Path) -> Iterator[None]:
    if not (bundle_dir / MANIFEST).is_file():
        raise BundleError(f"{bundle_dir}: not a model bundle (no {MANIFEST})")
    with open(bundle_dir / LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

