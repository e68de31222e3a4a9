"""The catalog: one SQLite file of authors, titles, genres and images.

Every write is idempotent (a title is keyed by its source and source id, an
image by its title and SHA-256), so importers and collectors can be killed and
re-run at will. Image paths are stored relative to the catalog's folder, so a
catalog and its images move together.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from datasets.images import ImageInfo
from datasets.texts import PLACEHOLDER_FLAG, TEXT_KEY, usable_text

SCHEMA_VERSION = 3
SPLITS = ("train", "val", "test")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS authors(
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS titles(
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    source_id TEXT NOT NULL,
    name TEXT NOT NULL,
    author_id INTEGER REFERENCES authors(id),
    url TEXT,
    UNIQUE(source, source_id));
CREATE TABLE IF NOT EXISTS genres(
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'genre',
    name TEXT NOT NULL,
    UNIQUE(kind, name));
CREATE TABLE IF NOT EXISTS title_genres(
    title_id INTEGER NOT NULL REFERENCES titles(id),
    genre_id INTEGER NOT NULL REFERENCES genres(id),
    PRIMARY KEY(title_id, genre_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS images(
    id INTEGER PRIMARY KEY,
    title_id INTEGER NOT NULL REFERENCES titles(id),
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    dhash INTEGER NOT NULL,
    source_url TEXT,
    collected_at TEXT NOT NULL,
    position INTEGER,
    split TEXT CHECK(split IN ('train', 'val', 'test')),
    status TEXT NOT NULL DEFAULT 'ok' CHECK(status IN ('ok', 'placeholder')),
    UNIQUE(title_id, sha256));
CREATE INDEX IF NOT EXISTS images_sha256 ON images(sha256);
CREATE TABLE IF NOT EXISTS image_genres(
    image_id INTEGER NOT NULL REFERENCES images(id),
    genre_id INTEGER NOT NULL REFERENCES genres(id),
    PRIMARY KEY(image_id, genre_id)) WITHOUT ROWID;
"""

# Version 2 adds what collectors know about a title (synopsis, type, score, members, flags);
# version 3 the history of a title's metadata as collectors saw it change (status, genres, ...).
_MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS title_info(
    title_id INTEGER NOT NULL REFERENCES titles(id),
    key TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY(title_id, key));
CREATE INDEX IF NOT EXISTS images_source_url ON images(source_url);
""",
    2: """
CREATE TABLE IF NOT EXISTS title_changes(
    id INTEGER PRIMARY KEY,
    title_id INTEGER NOT NULL REFERENCES titles(id),
    field TEXT NOT NULL,
    old TEXT,
    new TEXT,
    changed_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS title_changes_title ON title_changes(title_id);
""",
}


class CatalogError(ValueError):
    """A catalog that cannot be opened or used; str() is one line naming the file."""


@dataclass(frozen=True)
class ImageRow:
    """One catalog image with its labels, as the later stages read it."""

    id: int
    path: Path
    title: str
    author: str | None
    genres: tuple[str, ...]
    dhash: int
    position: int | None
    split: str | None
    status: str


WRITER_WAIT_SECONDS = 30.0


class Catalog:
    """A connection to one catalog file; use as a context manager."""

    def __init__(self, path: str | os.PathLike, create: bool = False, wait: float = WRITER_WAIT_SECONDS):
        """`wait`: how long a write waits for another process's write to finish."""
        self.path = Path(path)
        self.wait = wait
        if not create and not self.path.is_file():
            raise CatalogError(f"{self.path}: no such catalog (run `python -m datasets import` first)")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.root = self.path.resolve().parent
        try:
            self.db = sqlite3.connect(self.path, timeout=wait, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._check_schema(create)
        except sqlite3.OperationalError as err:
            message = self._busy_message(err) or f"{self.path}: not a usable catalog ({err})"
            raise CatalogError(message) from None
        except sqlite3.DatabaseError as err:
            raise CatalogError(f"{self.path}: not a usable catalog ({err})") from None

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all. Another process holding the write
        lock for longer than `wait` is a CatalogError saying so, with nothing written."""
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            raise CatalogError(self._busy_message(err) or f"{self.path}: {err}") from None
        try:
            yield
        except sqlite3.OperationalError as err:
            self.db.execute("ROLLBACK")
            message = self._busy_message(err)
            if message:
                raise CatalogError(message) from None
            raise
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        try:
            self.db.execute("COMMIT")
        except sqlite3.OperationalError as err:
            self.db.execute("ROLLBACK")
            raise CatalogError(self._busy_message(err) or f"{self.path}: {err}") from None

    def _busy_message(self, err: sqlite3.OperationalError) -> str | None:
        if "locked" not in str(err) and "busy" not in str(err):
            return None
        return (f"{self.path}: another process is writing to this catalog (waited {self.wait:g} s); "
                "nothing was written in this batch, run the command again when it has finished")

    # --- writes -----------------------------------------------------------------

    def author_id(self, name: str) -> int:
        self.db.execute("INSERT OR IGNORE INTO authors(name) VALUES (?)", (name,))
        return self.db.execute("SELECT id FROM authors WHERE name = ?", (name,)).fetchone()[0]

    def title_id(self, source: str, source_id: str, name: str, author: str | None,
                 url: str | None = None) -> int:
        """Id of the title, created on first sight; its author is fixed by the first writer."""
        author_id = self.author_id(author) if author else None
        self.db.execute(
            "INSERT OR IGNORE INTO titles(source, source_id, name, author_id, url) VALUES (?,?,?,?,?)",
            (source, source_id, name, author_id, url))
        row = self.db.execute(
            "SELECT t.id, a.name FROM titles t LEFT JOIN authors a ON a.id = t.author_id "
            "WHERE t.source = ? AND t.source_id = ?", (source, source_id)).fetchone()
        if author and row[1] is not None and row[1] != author:
            raise CatalogError(
                f"{self.path}: title {name!r} already belongs to author {row[1]!r}, not {author!r}")
        if author and row[1] is None:
            self.db.execute("UPDATE titles SET author_id = ? WHERE id = ?", (author_id, row[0]))
        return row[0]

    def genre_ids(self, names: Iterable[str], kind: str = "genre") -> list[int]:
        ids = []
        for name in names:
            self.db.execute("INSERT OR IGNORE INTO genres(kind, name) VALUES (?, ?)", (kind, name))
            ids.append(self.db.execute(
                "SELECT id FROM genres WHERE kind = ? AND name = ?", (kind, name)).fetchone()[0])
        return ids

    def set_title_genres(self, title_id: int, names: Iterable[str], kind: str = "genre") -> None:
        self.db.executemany("INSERT OR IGNORE INTO title_genres VALUES (?, ?)",
                            [(title_id, g) for g in self.genre_ids(names, kind)])

    def find_title(self, source: str, source_id: str) -> tuple[int, str, str | None] | None:
        """(id, name, author) of a title the catalog holds, or None."""
        return self.db.execute(
            "SELECT t.id, t.name, a.name FROM titles t LEFT JOIN authors a ON a.id = t.author_id"
            " WHERE t.source = ? AND t.source_id = ?", (source, source_id)).fetchone()

    def titles_with_info(self, source: str, key: str, value: str) -> list[tuple[str, str]]:
        """(source_id, name) of the source's titles whose info `key` is `value`."""
        return self.db.execute(
            "SELECT t.source_id, t.name FROM titles t JOIN title_info i ON i.title_id = t.id"
            " WHERE t.source = ? AND i.key = ? AND i.value = ? ORDER BY t.id",
            (source, key, value)).fetchall()

    def replace_title_genres(self, title_id: int, names: Iterable[str], kind: str = "genre") -> None:
        """The title's labels of `kind` become exactly `names` (a site changed them)."""
        self.db.execute("DELETE FROM title_genres WHERE title_id = ? AND genre_id IN "
                        "(SELECT id FROM genres WHERE kind = ?)", (title_id, kind))
        self.set_title_genres(title_id, names, kind)

    def title_genre_names(self, title_id: int, kind: str = "genre") -> list[str]:
        return sorted(r[0] for r in self.db.execute(
            "SELECT g.name FROM title_genres tg JOIN genres g ON g.id = tg.genre_id"
            " WHERE tg.title_id = ? AND g.kind = ?", (title_id, kind)))

    def rename_title(self, title_id: int, name: str) -> None:
        self.db.execute("UPDATE titles SET name = ? WHERE id = ?", (name, title_id))

    def add_title_change(self, title_id: int, field: str, old: str | None, new: str | None,
                         changed_at: str) -> None:
        self.db.execute("INSERT INTO title_changes(title_id, field, old, new, changed_at) VALUES (?,?,?,?,?)",
                        (title_id, field, old, new, changed_at))

    def title_changes(self) -> list[tuple[str, str, str, str, str | None, str | None, str]]:
        """Every recorded change, oldest first: (source, source_id, title, field, old, new, when)."""
        return self.db.execute(
            "SELECT t.source, t.source_id, t.name, c.field, c.old, c.new, c.changed_at FROM title_changes c"
            " JOIN titles t ON t.id = c.title_id ORDER BY c.id").fetchall()

    def has_image(self, source: str, source_id: str, sha256: str) -> bool:
        """Whether the title (source, source_id) already holds a file with these bytes."""
        return self.db.execute(
            "SELECT 1 FROM images i JOIN titles t ON t.id = i.title_id"
            " WHERE t.source = ? AND t.source_id = ? AND i.sha256 = ?",
            (source, source_id, sha256)).fetchone() is not None

    def add_image(self, title_id: int, path: str | os.PathLike, info: ImageInfo,
                  collected_at: str, source_url: str | None = None,
                  position: int | None = None, genres: Iterable[str] = ()) -> bool:
        """Record an image; False (and no change) when the title already has these bytes."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO images(title_id, path, sha256, width, height, dhash, "
            "source_url, collected_at, position) VALUES (?,?,?,?,?,?,?,?,?)",
            (title_id, self.relative(path), info.sha256, info.width, info.height, info.dhash,
             source_url, collected_at, position))
        if cursor.rowcount == 0:
            return False
        self.db.executemany("INSERT OR IGNORE INTO image_genres VALUES (?, ?)",
                            [(cursor.lastrowid, g) for g in self.genre_ids(genres)])
        return True

    def set_title_info(self, title_id: int, info: dict[str, str]) -> None:
        self.db.executemany("INSERT OR REPLACE INTO title_info(title_id, key, value) VALUES (?, ?, ?)",
                            [(title_id, key, value) for key, value in info.items()])

    def set_title_text(self, source: str, source_id: str, text: str) -> bool:
        """Store an imported title's text (synopsis); False if the catalog has no such title."""
        cursor = self.db.execute(
            "INSERT OR REPLACE INTO title_info(title_id, key, value)"
            " SELECT id, ?, ? FROM titles WHERE source = ? AND source_id = ?",
            (TEXT_KEY, text, source, source_id))
        return cursor.rowcount > 0

    def title_texts(self) -> dict[str, str]:
        """Title name -> its usable text (synopsis; placeholders left out), for titles that have one."""
        info: dict[int, dict[str, str]] = {}
        names: dict[int, str] = {}
        for title_id, name, key, value in self.db.execute(
                "SELECT t.id, t.name, i.key, i.value FROM title_info i JOIN titles t ON t.id = i.title_id"
                " WHERE i.key IN (?, ?) ORDER BY t.source, t.source_id", (TEXT_KEY, PLACEHOLDER_FLAG)):
            info.setdefault(title_id, {})[key] = value
            names[title_id] = name
        texts: dict[str, str] = {}
        for title_id, fields in info.items():
            text = usable_text(fields)
            if text:
                texts.setdefault(names[title_id], text)
        return texts

    def title_info(self, source: str, source_id: str) -> dict[str, str]:
        return dict(self.db.execute(
            "SELECT i.key, i.value FROM title_info i JOIN titles t ON t.id = i.title_id"
            " WHERE t.source = ? AND t.source_id = ?", (source, source_id)))

    def source_urls(self, source: str, source_id: str) -> set[str]:
        """Source URLs of the images a title already holds: what a re-run need not download."""
        return {row[0] for row in self.db.execute(
            "SELECT i.source_url FROM images i JOIN titles t ON t.id = i.title_id"
            " WHERE t.source = ? AND t.source_id = ? AND i.source_url IS NOT NULL", (source, source_id))}

    def mark_placeholders(self, min_titles: int) -> int:
        """Flag files shared by at least `min_titles` titles; returns how many images are flagged."""
        with self.transaction():
            self.db.execute("UPDATE images SET status = 'ok' WHERE status = 'placeholder'")
            self.db.execute(
                "UPDATE images SET status = 'placeholder', split = NULL WHERE sha256 IN ("
                " SELECT sha256 FROM images GROUP BY sha256"
                " HAVING COUNT(DISTINCT title_id) >= ?)", (min_titles,))
        return self.count_placeholders()

    def count_placeholders(self) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM images WHERE status = 'placeholder'").fetchone()[0]

    def set_splits(self, assignment: dict[int, str | None]) -> None:
        """Replace every image's split: images not in `assignment` get none."""
        with self.transaction():
            self.db.execute("UPDATE images SET split = NULL")
            self.db.executemany("UPDATE images SET split = ? WHERE id = ?",
                                [(s, i) for i, s in assignment.items() if s is not None])

    # --- reads ------------------------------------------------------------------

    def images(self, split: str | None = None, usable_only: bool = True) -> list[ImageRow]:
        """Images in catalog order, optionally of one split; placeholders are left out by default."""
        where, args = [], []
        if usable_only:
            where.append("i.status = 'ok'")
        if split is not None:
            where.append("i.split = ?")
            args.append(split)
        sql = (
            "SELECT i.id, i.path, t.name, a.name, i.dhash, i.position, i.split, i.status, i.title_id"
            " FROM images i JOIN titles t ON t.id = i.title_id"
            " LEFT JOIN authors a ON a.id = t.author_id"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY t.source, t.source_id, i.position, i.path, i.id")
        image_genres = self._genres("SELECT ig.image_id, g.name FROM image_genres ig"
                                    " JOIN genres g ON g.id = ig.genre_id")
        title_genres = self._genres("SELECT tg.title_id, g.name FROM title_genres tg"
                                    " JOIN genres g ON g.id = tg.genre_id")
        return [
            ImageRow(id=r[0], path=self.resolve(r[1]), title=r[2], author=r[3],
                     genres=tuple(sorted(image_genres.get(r[0], set()) | title_genres.get(r[8], set()))),
                     dhash=r[4], position=r[5], split=r[6], status=r[7])
            for r in self.db.execute(sql, args)
        ]

    def _genres(self, sql: str) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for key, name in self.db.execute(sql):
            found.setdefault(key, set()).add(name)
        return found

    def count(self, table: str) -> int:
        if table not in ("authors", "titles", "genres", "images"):
            raise ValueError(f"unknown table {table!r}")
        return self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def relative(self, path: str | os.PathLike) -> str:
        return os.path.relpath(Path(path).resolve(), self.root)

    def resolve(self, stored: str) -> Path:
        # normpath, not Path.resolve: no file-system calls per row.
        return Path(os.path.normpath(os.path.join(self.root, stored)))

    def _check_schema(self, create: bool) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            if tables or not create:
                raise CatalogError(f"{self.path}: not a Stylefinder catalog (no meta table)")
            # executescript commits any open transaction, so the script carries its own.
            self.db.executescript(
                "BEGIN IMMEDIATE;" + _SCHEMA + "".join(_MIGRATIONS.values())
                + f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); COMMIT;")
            return
        row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is not None and row[0].isdigit() and int(row[0]) in _MIGRATIONS:
            self._migrate(int(row[0]))
            row = (str(SCHEMA_VERSION),)
        if row is None or row[0] != str(SCHEMA_VERSION):
            found = row[0] if row else "none"
            raise CatalogError(
                f"{self.path}: catalog schema version {found}, this version of Stylefinder "
                f"reads version {SCHEMA_VERSION}")

    def _migrate(self, version: int) -> None:
        """Additive upgrades, each in one transaction: an old catalog keeps every row."""
        while version in _MIGRATIONS:
            self.db.executescript("BEGIN IMMEDIATE;" + _MIGRATIONS[version]
                                  + f"UPDATE meta SET value = '{version + 1}' WHERE key = 'schema_version';"
                                  + "COMMIT;")
            version += 1
