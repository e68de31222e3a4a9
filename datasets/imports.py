"""Imports of existing data: a folder tree `ROOT/<author>/<title>/<image>` or a CSV manifest.

Sources are read into `SourceImage` records first, then `ingest` writes them in
batched transactions. Records are processed in a fixed order and each image is
keyed by (title, SHA-256), so a killed import re-run ends with exactly the
catalog an uninterrupted one gives.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path, PureWindowsPath

from tqdm import tqdm

from datasets.catalog import Catalog, CatalogError
from datasets.config import ImportConfig
from datasets.images import ImageError, file_problem, file_sha256, inspect_image, is_image_name
from datasets.texts import SYNOPSIS_FILE, TextError, check_text, read_text_file

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("image", "title", "author", "genres")
TEXT_COLUMN = "text"  # optional: the title's synopsis (the first non-empty cell of its rows)
_REQUIRED_COLUMNS = ("image", "title")


class SourceError(ValueError):
    """A source that cannot be imported at all; str() is one line naming it."""


@dataclass(frozen=True)
class SourceImage:
    path: Path
    title: str
    author: str | None
    genres: tuple[str, ...]
    position: int
    origin: str
    text: str | None = None  # the title's synopsis, cleaned (datasets/texts.py)


@dataclass
class ImportReport:
    added: int = 0
    already_present: int = 0
    duplicates: int = 0
    flat: int = 0
    placeholders: int = 0
    texts: int = 0  # titles whose text (synopsis) was stored
    rejected: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"added {self.added}, already in catalog {self.already_present}, "
                f"duplicates in a title {self.duplicates}, flat single-colour {self.flat}, "
                f"rejected {len(self.rejected)}; placeholders flagged {self.placeholders}; "
                f"titles with a text {self.texts}")


def read_source(source: str | os.PathLike, image_root: str | os.PathLike | None = None,
                allow_outside_root: bool = False) -> tuple[list[SourceImage], list[str]]:
    """Records of a folder tree or a `.csv` manifest, plus one-line reasons for entries skipped."""
    path = Path(source)
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    if path.is_dir():
        if image_root is not None:
            raise SourceError(f"{path}: --image-root applies to CSV manifests only")
        return read_folder_tree(path)
    if path.suffix.lower() == ".csv":
        return read_manifest(path, image_root, allow_outside_root)
    raise SourceError(f"{path}: expected a folder ROOT/<author>/<title>/<image> or a .csv manifest")


def read_folder_tree(root: Path) -> tuple[list[SourceImage], list[str]]:
    records: list[SourceImage] = []
    skipped: list[str] = []
    for author_dir in _sorted_entries(root):
        if not author_dir.is_dir():
            skipped.append(f"{author_dir}: not inside ROOT/<author>/<title>/, ignored")
            continue
        for title_dir in _sorted_entries(author_dir):
            if not title_dir.is_dir():
                skipped.append(f"{title_dir}: not inside ROOT/<author>/<title>/, ignored")
                continue
            position = 0
            text = None
            if (title_dir / SYNOPSIS_FILE).is_file():
                try:
                    text = read_text_file(title_dir / SYNOPSIS_FILE)
                except TextError as err:
                    skipped.append(f"{err}; the title is imported without it")
            for file in _sorted_entries(title_dir):
                if file.name == SYNOPSIS_FILE:
                    continue
                problem = file_problem(file)
                if problem is None and not is_image_name(file):
                    problem = "not a png, jpg, webp, gif or bmp file"
                if problem:
                    skipped.append(f"{file}: {problem}, ignored")
                    continue
                records.append(SourceImage(file, title_dir.name, author_dir.name, (),
                                           position, str(file), text))
                position += 1
    if not records and not skipped:
        raise SourceError(f"{root}: no images found (expected ROOT/<author>/<title>/<image>)")
    return records, skipped


def read_manifest(manifest: Path, image_root: str | os.PathLike | None = None,
                  allow_outside_root: bool = False) -> tuple[list[SourceImage], list[str]]:
    """Rows name images relative to `image_root` (default: the manifest's folder, where absolute
    paths are allowed too, as `datasets export` writes them). With an explicit `image_root`, a
    row that points outside it (`../x.png`, an absolute path) is refused unless
    `allow_outside_root`: a root confines what training reads and a bundle copies."""
    base = Path(image_root) if image_root is not None else manifest.parent
    if image_root is not None and not base.is_dir():
        raise SourceError(f"{base}: --image-root is not a directory")
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            missing = [c for c in _REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise SourceError(
                    f"{manifest}: missing column(s) {', '.join(missing)}; "
                    f"expected header {','.join(MANIFEST_COLUMNS)}")
            rows = list(reader)
    except UnicodeDecodeError:
        raise SourceError(f"{manifest}: not a UTF-8 CSV file") from None
    except csv.Error as err:
        raise SourceError(f"{manifest}: malformed CSV ({err})") from None
    records: list[SourceImage] = []
    skipped: list[str] = []
    positions: dict[str, int] = {}
    texts: dict[str, str] = {}  # each title's text: the first non-empty cell of its rows
    for line, row in enumerate(rows, start=2):
        origin = f"{manifest}:{line}"
        image, title = (row.get("image") or "").strip(), (row.get("title") or "").strip()
        if not image or not title:
            skipped.append(f"{origin}: empty image or title, row ignored")
            continue
        if image_root is not None and not allow_outside_root and not _inside(base, image):
            skipped.append(f"{origin}: {image} is outside the image root {base}, row refused "
                           "(--allow-outside-root accepts it)")
            continue
        author = (row.get("author") or "").strip() or None
        genres = tuple(sorted({g.strip() for g in (row.get("genres") or "").split("|") if g.strip()}))
        position = positions.get(title, 0)
        positions[title] = position + 1
        try:
            text = check_text(row.get(TEXT_COLUMN) or "", origin)
        except TextError as err:
            skipped.append(f"{err}; the row's image is imported without it")
            text = None
        if text and title in texts and texts[title] != text:
            skipped.append(f"{origin}: a text different from the title's first one; the first is kept")
        if text:
            texts.setdefault(title, text)
        records.append(SourceImage(base / image, title, author, genres, position, origin))
    return [replace(r, text=texts.get(r.title)) for r in records], skipped


def ingest(catalog: Catalog, records: Sequence[SourceImage], config: ImportConfig | None = None,
           progress: bool = True) -> ImportReport:
    """Write `records` into `catalog`, `config.batch_size` images per transaction."""
    config = config or ImportConfig()
    report = ImportReport()
    seen: set[tuple[str, str]] = set()  # (title, sha256) met in this run
    bar = tqdm(total=len(records), desc="import", unit="img", disable=not progress)
    for batch in _batches(records, config.batch_size):
        with catalog.transaction():
            for record in batch:
                _ingest_one(catalog, record, config, report, seen)
        bar.update(len(batch))
    bar.close()
    texts = {r.title: r.text for r in reversed(records) if r.text}  # each title's first
    if texts:
        with catalog.transaction():
            report.texts = sum(catalog.set_title_text(config.source, title, text)
                               for title, text in texts.items())
    report.placeholders = catalog.mark_placeholders(config.placeholder_min_titles)
    return report


def _ingest_one(catalog: Catalog, record: SourceImage, config: ImportConfig,
                report: ImportReport, seen: set[tuple[str, str]]) -> None:
    try:
        sha256 = file_sha256(record.path)
        if (record.title, sha256) in seen:
            report.duplicates += 1
            return
        seen.add((record.title, sha256))
        if catalog.has_image(config.source, record.title, sha256):
            report.already_present += 1
            return
        info = inspect_image(record.path, config.max_pixels, config.flat_tolerance)
    except ImageError as err:
        report.rejected.append(_with_origin(str(err), record))
        return
    if info.is_flat:
        report.flat += 1
        return
    try:
        title_id = catalog.title_id(config.source, record.title, record.title, record.author)
    except CatalogError as err:
        report.rejected.append(_with_origin(f"{record.path}: {err}", record))
        return
    added = catalog.add_image(title_id, record.path, info, _mtime_iso(record.path),
                              position=record.position, genres=record.genres)
    if added:
        report.added += 1
    else:
        report.duplicates += 1


def _inside(base: Path, relative: str) -> bool:
    """Whether `relative` names a path under `base`, judged on the names (a symlinked folder
    inside the root is the user's choice, so links are not resolved)."""
    if Path(relative).is_absolute() or PureWindowsPath(relative).is_absolute():
        return False
    joined = os.path.normpath(os.path.join(os.path.abspath(base), relative))
    return joined.startswith(os.path.join(os.path.abspath(base), ""))


def _with_origin(message: str, record: SourceImage) -> str:
    return message if record.origin == str(record.path) else f"{record.origin}: {message}"


def _batches(items: Sequence[SourceImage], size: int) -> Iterator[Sequence[SourceImage]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _mtime_iso(path: Path) -> str:
    # The file's own time, not the clock: a re-run must write identical rows.
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")


def _sorted_entries(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if not p.name.startswith(".")),
                  key=lambda p: _natural_key(p.name))


def _natural_key(name: str) -> list[object]:
    """'ep2' before 'ep10': episode files are numbered without padding."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
