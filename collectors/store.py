"""Collected titles and images into the catalog and the image folder, resumably.

Images are written to `<images>/<source>/<source id>/<position>-<sha256 prefix>.<ext>`
through a temporary name, checked by the data layer's loader, and recorded in
one transaction each. A re-run asks the catalog which source URLs a title
already holds, and skips titles marked complete. Broken downloads go to
`<images>/quarantine/` and are reported, never recorded.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

from PIL import Image

from collectors.records import ImageLink, Summary, TitleRecord
from datasets.catalog import Catalog
from datasets.images import ImageError, inspect_image

_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp"}
COMPLETE = "collector_complete"


class CatalogStore:
    def __init__(self, catalog: Catalog, images_dir: str | os.PathLike):
        self.catalog = catalog
        self.images_dir = Path(images_dir)
        self.quarantine = self.images_dir / "quarantine"

    def is_complete(self, source: str, source_id: str) -> bool:
        return self.catalog.title_info(source, source_id).get(COMPLETE) == "1"

    def known_urls(self, source: str, source_id: str) -> set[str]:
        return self.catalog.source_urls(source, source_id)

    def save_title(self, record: TitleRecord) -> int:
        with self.catalog.transaction():
            title_id = self.catalog.title_id(record.source, record.source_id, record.name, record.author,
                                             record.url)
            for kind, names in (("genre", record.genres), ("theme", record.themes),
                                ("demographic", record.demographics)):
                self.catalog.set_title_genres(title_id, names, kind)
            self.catalog.set_title_info(title_id, record.info)
        return title_id

    def mark_complete(self, title_id: int) -> None:
        with self.catalog.transaction():
            self.catalog.set_title_info(title_id, {COMPLETE: "1"})

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
