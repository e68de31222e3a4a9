"""Collected titles and images into the catalog and the image folder, resumably.

Images are written to `<images>/<source>/<source id>/<position>-<sha256 prefix>.<ext>`
through a temporary name, checked by the data layer's loader, and recorded in
one transaction each. A re-run asks the catalog which source URLs a title
already holds. Broken downloads go to `<images>/quarantine/` and are reported, never recorded.

A title read again updates its metadata in place; each change of a tracked field (name,
genres, synopsis, status, adult flag) is also written to the catalog's `title_changes`
history, with the old and the new value. A title is marked complete, with the time of the
check, only once every image it lists is stored.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from collectors.records import ImageLink, Summary, TitleRecord
from datasets.catalog import Catalog
from datasets.images import ImageError, inspect_image

log = logging.getLogger(__name__)

_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
COMPLETE = "collector_complete"
CHECKED = "collector_checked"  # when a collector last read the title through (UTC, ISO 8601)
STATUS = "status"  # "ongoing" or "finished", as the site says
ONGOING, FINISHED = "ongoing", "finished"
REMOVED = "removed"  # the site answers 404 for a title the catalog holds: kept, no longer followed
EPISODES = "episodes"  # how many episodes the site listed at the last read
# title_info keys whose changes are history; the rest (score, members, episodes) just update.
TRACKED_INFO = ("synopsis", STATUS, "adult")
LABEL_KINDS = ("genre", "theme", "demographic")


@dataclass(frozen=True)
class KnownTitle:
    """What the catalog knows of a title before a collector reads it again."""

    title_id: int
    complete: bool
    status: str  # ONGOING, FINISHED or "" when never said
    checked: datetime | None
    episodes: int | None  # listed at the last read; None when unknown

    def due(self, now: datetime, refresh_days: float) -> bool:
        """Whether the title may have changed: not complete, ongoing, or not checked for a while."""
        if self.status == REMOVED and self.checked is not None:
            return (now - self.checked).total_seconds() >= refresh_days * 86400
        if not self.complete or self.status != FINISHED or self.checked is None:
            return True
        return (now - self.checked).total_seconds() >= refresh_days * 86400

    @property
    def listed(self) -> int | None:
        """The episode count a site may page from: only when every listed image is stored."""
        return self.episodes if self.complete else None


class CatalogStore:
    def __init__(self, catalog: Catalog, images_dir: str | os.PathLike):
        self.catalog = catalog
        self.images_dir = Path(images_dir)
        self.quarantine = self.images_dir / "quarantine"

    def known_title(self, source: str, source_id: str) -> KnownTitle | None:
        found = self.catalog.find_title(source, source_id)
        if found is None:
            return None
        info = self.catalog.title_info(source, source_id)
        checked = info.get(CHECKED)
        episodes = info.get(EPISODES, "")
        return KnownTitle(found[0], info.get(COMPLETE) == "1", info.get(STATUS, ""),
                          datetime.fromisoformat(checked) if checked else None,
                          int(episodes) if episodes.isdigit() else None)

    def ongoing_titles(self, source: str) -> list[tuple[str, str]]:
        """(source_id, name) of the source's titles last seen ongoing."""
        return self.catalog.titles_with_info(source, STATUS, ONGOING)

    def known_urls(self, source: str, source_id: str) -> set[str]:
        return self.catalog.source_urls(source, source_id)

    def save_title(self, record: TitleRecord) -> tuple[int, list[str]]:
        """Store or update the title; its id and one line per metadata change (also in history).
        The title is left incomplete until `mark_done` says its images are all in."""
        with self.catalog.transaction():
            found = self.catalog.find_title(record.source, record.source_id)
            changes = [] if found is None else self._update(found, record)
            keep = found is not None and found[2] is not None  # a title's author never changes here
            title_id = self.catalog.title_id(record.source, record.source_id, record.name,
                                             None if keep else record.author, record.url)
            if found is None:
                for kind, names in zip(LABEL_KINDS, (record.genres, record.themes, record.demographics),
                                       strict=True):
                    self.catalog.set_title_genres(title_id, names, kind)
            self.catalog.set_title_info(title_id, {**record.info, COMPLETE: "0"})
        return title_id, changes

    def _update(self, found: tuple[int, str, str | None], record: TitleRecord) -> list[str]:
        title_id, name, author = found
        when, changes = _now(), []

        def change(field: str, old: str | None, new: str | None) -> None:
            self.catalog.add_title_change(title_id, field, old, new, when)
            changes.append(f"{record.source} {record.name} ({record.source_id}): {field} "
                           f"{_short(old)} -> {_short(new)}")

        if record.name != name:
            self.catalog.rename_title(title_id, record.name)
            change("name", name, record.name)
        if record.author and author and record.author != author:
            # Recorded, not applied: the author is the style label every model was trained on.
            log.warning("%s %s: the site now names %r as author; the catalog keeps %r",
                        record.source, record.source_id, record.author, author)
            change("author", author, record.author)
        for kind, names in zip(LABEL_KINDS, (record.genres, record.themes, record.demographics), strict=True):
            old, new = self.catalog.title_genre_names(title_id, kind), sorted(set(names))
            if new and new != old:  # none read is a parsing gap (reported as missing), not a change
                self.catalog.replace_title_genres(title_id, new, kind)
                change(kind + "s", "; ".join(old), "; ".join(new))
        before = self.catalog.title_info(record.source, record.source_id)
        for key in TRACKED_INFO:
            if key in before and key in record.info and before[key] != record.info[key]:
                change(key, before[key], record.info[key])
        return changes

    def record_change(self, title_id: int, field: str, old: str | None, new: str) -> None:
        """A change seen without storing the title again (a title that became adult)."""
        with self.catalog.transaction():
            self.catalog.add_title_change(title_id, field, old, new, _now())
            self.catalog.set_title_info(title_id, {field: new, CHECKED: _now()})

    def mark_done(self, title_id: int, complete: bool) -> None:
        """The title was read through: when, and whether every image it lists is stored."""
        with self.catalog.transaction():
            self.catalog.set_title_info(title_id, {COMPLETE: "1" if complete else "0", CHECKED: _now()})

    def save_image(self, record: TitleRecord, title_id: int, link: ImageLink, data: bytes,
                   summary: Summary) -> bool:
        """Store one download; False when it was broken (quarantined) or flat."""
        folder = self.images_dir / record.source / _safe(record.source_id)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{link.position:05d}.part"
        tmp.write_bytes(data)
        try:
            info = inspect_image(tmp)
            with Image.open(tmp) as probe:
                extension = _EXTENSIONS.get(probe.format or "", ".img")
        except ImageError as err:
            self.quarantine.mkdir(parents=True, exist_ok=True)
            kept = self.quarantine / f"{record.source}-{_safe(record.source_id)}-{link.position:05d}.bin"
            os.replace(tmp, kept)
            summary.quarantined.append(f"{link.url}: {err.problem} (kept as {kept})")
            return False
        if info.is_flat:
            tmp.unlink()
            summary.skip("flat single-colour image")
            return False
        final = folder / f"{link.position:05d}-{info.sha256[:12]}{extension}"  # the loader hashed it
        os.replace(tmp, final)
        with self.catalog.transaction():
            self.catalog.add_image(title_id, final, info, _now(), source_url=link.url, position=link.position)
        return True


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:80]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _short(value: str | None, limit: int = 60) -> str:
    text = " ".join((value or "").split()) or "(none)"
    return text if len(text) <= limit else text[:limit - 1] + "…"
