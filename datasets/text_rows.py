"""Texts with their genres, as the text genre model trains on them: from manifests or a catalog.

A text manifest is a CSV with the columns `id,group,text,genres[,lang]`: genres joined by `|`,
`group` the unit a split keeps together (a title, a franchise, a source package), `lang` a
language code or empty; an optional `image` column (relative to the manifest's folder) names
the title's picture, which fusion of image and text genres is tuned and measured on.
`../shared/data/package_tags.py` writes such files. A catalog gives one row per title that
has a usable synopsis, labelled with the title's genres, in the split its images are in
(splits are title-disjoint, so each text stays on one side).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from datasets.texts import TextError, check_text

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "text", "genres")
_MAX_FIELD = 1 << 20  # csv's default 128 KB limit would fail on an over-long cell before we can say so


@dataclass(frozen=True)
class TextRow:
    id: str
    group: str
    text: str
    genres: tuple[str, ...]
    lang: str = ""
    image: str = ""  # the title's image (poster, icon) where the manifest has an `image` column


def read_text_manifest(path: str | os.PathLike, languages: Sequence[str] = ()) -> list[TextRow]:
    """Rows of a text manifest, optionally of some languages only. One TextError line naming the
    file for a missing column or an unreadable file. A row whose text is unusable (binary, over
    256 KB) is skipped with one warning naming the file and row, as a folder import skips a bad
    image; rows with an empty text or no genre are skipped quietly (they teach nothing)."""
    path = Path(path)
    csv.field_size_limit(max(csv.field_size_limit(), _MAX_FIELD))
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or ())]
            if missing:
                raise TextError(
                    f"{path}: not a text manifest (no {', '.join(missing)} column; "
                    f"expected {','.join(REQUIRED_COLUMNS)}[,group,lang])"
                )
            rows = []
            for number, record in enumerate(reader, start=1):
                lang = (record.get("lang") or "").strip()
                if languages and lang not in languages:
                    continue
                try:
                    text = check_text(record.get("text") or "", f"{path} row {number}")
                except TextError as err:
                    log.warning("%s; row skipped", err)
                    continue
                genres = tuple(
                    sorted({g.strip() for g in (record.get("genres") or "").split("|") if g.strip()})
                )
                if text and genres:
                    item = (record.get("id") or "").strip() or f"row{number}"
                    image = (record.get("image") or "").strip()
                    rows.append(TextRow(item, (record.get("group") or "").strip() or item, text, genres, lang,
                                        str(path.parent / image) if image else ""))
    except FileNotFoundError:
        raise TextError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise TextError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except csv.Error as err:
        raise TextError(f"{path}: not a readable CSV ({err})") from None
    except OSError as err:
        raise TextError(f"{path}: cannot be read ({err.strerror or err})") from None
    return rows


def catalog_text_rows(catalog_path: str | os.PathLike, split: str) -> list[TextRow]:
    """One row per title of `split` with a usable synopsis and at least one genre."""
    from datasets.catalog import Catalog

    with Catalog(catalog_path) as catalog:
        texts = catalog.title_texts()
        genres: dict[str, set[str]] = {}
        for image in catalog.images(split):
            if image.title in texts:
                genres.setdefault(image.title, set()).update(image.genres)
    return [
        TextRow(title, title, texts[title], tuple(sorted(names))) for title, names in genres.items() if names
    ]


def genre_vocabulary(rows: Sequence[TextRow], min_items: int = 2) -> list[str]:
    """Genres with at least `min_items` rows (fewer cannot be learnt nor given a threshold), sorted."""
    counts: dict[str, int] = {}
    for row in rows:
        for genre in row.genres:
            counts[genre] = counts.get(genre, 0) + 1
    return sorted(g for g, n in counts.items() if n >= min_items and n < len(rows))
