"""Shards of encoded images and the index that finds them.

Layout under the store's root:
- `index.sqlite`: which shards exist, and for each (encoder, image digest) its shard and row;
  also the content digests of files seen before (`files`), so a rerun hashes nothing.
- `shards/<encoder>/<name>.npz`: one complete file per shard (digests, features, usable flags,
  dHashes, problems), written to a temporary name and renamed into place. A kill loses at
  most the shards being written.
- `encoders/<encoder>.json` and `.tflite`: what each encoder is, and its network.

The shard files are the truth; the index can be rebuilt from them. A shard on disk that the
index lacks (its writer died between the rename and the index update) is registered on the
next `reconcile`; an index row whose shard is gone or unreadable is dropped, so its images
count as missing and are encoded again, and nothing else is.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import sqlite3
import struct
import time
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INDEX_NAME = "index.sqlite"
SHARD_SUFFIX = ".npz"
_DROPPING = ".dropping-"  # an encoder folder moved aside: the drop is committed
_STALE_TMP_SECONDS = 6 * 3600  # a temporary shard this old belongs to a writer that died
_SQL_CHUNK = 50_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files(path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                                 digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards(encoder TEXT NOT NULL, name TEXT NOT NULL, rows INTEGER NOT NULL,
                                  bytes INTEGER NOT NULL, PRIMARY KEY(encoder, name));
CREATE TABLE IF NOT EXISTS entries(encoder TEXT NOT NULL, digest TEXT NOT NULL, shard TEXT NOT NULL,
                                   row INTEGER NOT NULL, usable INTEGER NOT NULL, dhash INTEGER NOT NULL,
                                   problem TEXT, PRIMARY KEY(encoder, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_shard ON entries(encoder, shard);
"""


class StoreError(ValueError):
    """A store that cannot be used; str() is one line naming the file."""


@dataclass(frozen=True)
class ShardContents:
    digests: np.ndarray  # str [n]
    features: np.ndarray  # float16 [n, dim] (float32 for encoders that ask for it); zeros where not usable
    usable: np.ndarray  # bool [n]
    dhash: np.ndarray  # int64 [n]
    problems: np.ndarray  # str [n]; "" where usable


def write_shard(path: Path, contents: ShardContents) -> int:
    """Write one complete shard file: a temporary name, fsync, then an atomic rename. Returns bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{socket.gethostname()}-{os.getpid()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, digests=contents.digests.astype(str), features=_stored_dtype(contents.features),
                 usable=contents.usable.astype(bool), dhash=contents.dhash.astype(np.int64),
                 problems=contents.problems.astype(str))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    return path.stat().st_size


def _stored_dtype(features: np.ndarray) -> np.ndarray:
    """float16 unless the features are float32 on purpose (outputs compared against thresholds)."""
    return features if features.dtype == np.float32 else features.astype(np.float16)


def read_shard(path: Path) -> ShardContents:
    """A shard file, checked for shape; its features memory-mapped, so reading a few rows of a
    shard reads only those. StoreError (one line naming the file) when unreadable."""
    try:
        with zipfile.ZipFile(path) as archive:
            small = {name: np.load(archive.open(f"{name}.npy"), allow_pickle=False)
                     for name in ("digests", "usable", "dhash", "problems")}
            features = _stored_member(path, archive.getinfo("features.npy"))
    except FileNotFoundError:
        raise StoreError(f"{path}: shard is missing") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, struct.error) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise StoreError(f"{path}: corrupt shard ({reason})") from None
    contents = ShardContents(small["digests"], features, small["usable"], small["dhash"], small["problems"])
    n = len(contents.digests)
    if not (features.ndim == 2 and len(features) == n and len(contents.usable) == n
            and len(contents.dhash) == n and len(contents.problems) == n):
        raise StoreError(f"{path}: corrupt shard (arrays of different lengths)")
    return contents


def _stored_member(path: Path, info: zipfile.ZipInfo) -> np.ndarray:
    """Memory-map an uncompressed .npy member of a zip file (np.savez stores them so)."""
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{info.filename} is compressed")
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)  # the member's local header: name and extra-field lengths at 26 and 28
        if local[:4] != b"PK\x03\x04":
            raise ValueError("bad local header")
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        handle.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
    if offset + int(np.prod(shape)) * dtype.itemsize > info.header_offset + 30 + name_length + extra_length \
            + info.file_size:
        raise ValueError("features cut short")
    return np.memmap(path, dtype, "r", offset, shape, order="F" if fortran else "C")


class FeatureStore:
    """The store at `root`; the index is opened on first use and closed with `close()`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._db: sqlite3.Connection | None = None
        if any(self.root.glob(f"{_DROPPING}*")):  # before anyone reads an encoder half dropped
            self.finish_drops()

    # -- the index ---------------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._db = self._open_index()
        return self._db

    def _open_index(self) -> sqlite3.Connection:
        path = self.root / INDEX_NAME
        try:
            db = sqlite3.connect(path, timeout=120)
            db.executescript(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM shards").fetchone()
            return db
        except sqlite3.DatabaseError as err:
            aside = path.with_name(f"{INDEX_NAME}.corrupt-{int(time.time())}")
            log.warning("%s: unreadable index (%s); moved to %s and rebuilt from the shards", path, err,
                        aside.name)
            os.replace(path, aside)
            for journal in (path.with_name(INDEX_NAME + "-journal"),):
                journal.unlink(missing_ok=True)
            db = sqlite3.connect(path, timeout=120)
            db.executescript(_SCHEMA)
            self._db = db
            self.reconcile()
            return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- shards ------------------------------------------------------------------------------
    def shard_dir(self, encoder: str) -> Path:
        return self.root / "shards" / encoder

    def shard_path(self, encoder: str, name: str) -> Path:
        return self.shard_dir(encoder) / f"{name}{SHARD_SUFFIX}"

    def add_shard(self, encoder: str, name: str) -> int:
        """Index a shard file already in place; returns how many of its images were new."""
        path = self.shard_path(encoder, name)
        contents = read_shard(path)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO shards VALUES (?,?,?,?)",
                            (encoder, name, len(contents.digests), path.stat().st_size))
            before = self.db.total_changes
            # An image already stored elsewhere keeps its first place: stored exactly once.
            self.db.executemany(
                "INSERT OR IGNORE INTO entries VALUES (?,?,?,?,?,?,?)",
                ((encoder, str(d), name, i, int(u), int(h), str(p) or None) for i, (d, u, h, p) in
                 enumerate(zip(contents.digests, contents.usable, contents.dhash, contents.problems,
                               strict=True))))
            return self.db.total_changes - before

    def forget_shard(self, encoder: str, name: str, reason: str) -> None:
        """Drop a shard that cannot be read: its images count as missing again."""
        log.warning("%s", reason)
        with self.db:
            self.db.execute("DELETE FROM entries WHERE encoder = ? AND shard = ?", (encoder, name))
            self.db.execute("DELETE FROM shards WHERE encoder = ? AND name = ?", (encoder, name))
        path = self.shard_path(encoder, name)
        if path.exists():
            os.replace(path, path.with_name(f".{path.name}.corrupt"))

    def reconcile(self, encoder: str | None = None) -> None:
        """Make the index agree with the shard files: register unindexed shards, drop rows of
        vanished ones, delete stale temporary files."""
        encoders = [encoder] if encoder else [p.name for p in (self.root / "shards").glob("*") if p.is_dir()]
        now = time.time()
        for enc in encoders:
            folder = self.shard_dir(enc)
            on_disk = {p.stem for p in folder.glob(f"*{SHARD_SUFFIX}")} if folder.is_dir() else set()
            indexed = {row[0] for row in self.db.execute("SELECT name FROM shards WHERE encoder = ?", (enc,))}
            for name in sorted(on_disk - indexed):
                try:
                    self.add_shard(enc, name)
                except StoreError as err:
                    self.forget_shard(enc, name, str(err))
            for name in sorted(indexed - on_disk):
                self.forget_shard(enc, name, f"{self.shard_path(enc, name)}: shard is missing; "
                                             "its images will be encoded again")
            for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
                if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink(missing_ok=True)

    # -- lookups -----------------------------------------------------------------------------
    def _requested(self, digests: Iterable[str | None]) -> None:
        """Fill the temporary table `req(digest, pos)` with the digests asked about."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS req(pos INTEGER PRIMARY KEY, digest TEXT)")
        self.db.execute("DELETE FROM req")
        batch: list[tuple[int, str]] = []
        for pos, digest in enumerate(digests):
            if digest is not None:
                batch.append((pos, digest))
            if len(batch) >= _SQL_CHUNK:
                self.db.executemany("INSERT INTO req VALUES (?,?)", batch)
                batch = []
        self.db.executemany("INSERT INTO req VALUES (?,?)", batch)

    def missing(self, encoder: str, digests: Iterable[str | None]) -> list[int]:
        """Positions of `digests` this encoder has not stored (None digests are not asked about)."""
        self._requested(digests)
        return [row[0] for row in self.db.execute(
            "SELECT r.pos FROM req r LEFT JOIN entries e ON e.encoder = ? AND e.digest = r.digest "
            "WHERE e.digest IS NULL ORDER BY r.pos", (encoder,))]

    def gather(self, encoder: str, digests: list[str | None], out: np.ndarray, transform=None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Write each stored image's features (through `transform`, [m, dim] -> [m, out_dim]) into
        `out[pos]`, one shard in memory at a time. Returns (found, usable, dhash, problems) over
        the positions; images of a shard found unreadable are forgotten and reported not found."""
        n = len(digests)
        found, usable, dhash = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, np.int64)
        problems: list[str] = []
        self._requested(digests)
        # Streamed: one shard's rows in memory at a time. CROSS JOIN makes SQLite walk the request
        # and look each digest up (not walk the whole store and scan the request for each row).
        rows = self.db.execute(
            "SELECT e.shard, e.row, r.pos, e.usable, e.dhash, e.problem FROM req r CROSS JOIN entries e "
            "ON e.encoder = ? AND e.digest = r.digest ORDER BY e.shard, e.row", (encoder,))
        lost: list[tuple[str, str]] = []
        for shard, group in _by_shard(rows):
            path = self.shard_path(encoder, shard)
            rows_in = np.array([g[1] for g in group])
            try:
                contents = read_shard(path)
                if rows_in.max() >= len(contents.digests):
                    raise StoreError(f"{path}: corrupt shard (fewer rows than indexed)")
            except StoreError as err:
                lost.append((shard, f"{err}; its images will be encoded again"))
                continue
            pos = np.array([g[2] for g in group])
            features = np.asarray(contents.features[rows_in], np.float32)
            out[pos] = transform(features) if transform else features
            found[pos] = True
            usable[pos] = [bool(g[3]) for g in group]
            dhash[pos] = [g[4] for g in group]
            problems.extend(g[5] for g in group if g[5])
        for shard, reason in lost:
            self.forget_shard(encoder, shard, reason)
        return found, usable, dhash, problems

    # -- reporting and clean-up --------------------------------------------------------------
    def stats(self) -> dict:
        """Per encoder: images, usable images, shards and bytes; and the digests remembered."""
        encoders = {}
        for enc, images, good in self.db.execute(
                "SELECT encoder, COUNT(*), SUM(usable) FROM entries GROUP BY encoder"):
            encoders[enc] = {"images": images, "usable": good or 0}
        for enc, shards, size in self.db.execute(
                "SELECT encoder, COUNT(*), SUM(bytes) FROM shards GROUP BY encoder"):
            entry = encoders.setdefault(enc, {"images": 0, "usable": 0})
            entry.update(shards=shards, bytes=size or 0,
                         bytes_per_image=round((size or 0) / max(entry["images"], 1)))
        files = self.db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        return {"root": str(self.root), "encoders": encoders, "files_remembered": files,
                "bytes": sum(e.get("bytes", 0) for e in encoders.values())}

    def gc(self, keep: Iterable[str], dry_run: bool = False) -> dict:
        """Drop every stored image whose digest is not in `keep`: shards left empty are deleted,
        shards left less than half full are rewritten with the rest."""
        self._requested(keep)
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS keep(digest TEXT PRIMARY KEY)")
        self.db.execute("DELETE FROM keep")
        self.db.execute("INSERT OR IGNORE INTO keep SELECT digest FROM req")
        dead = self.db.execute(
            "SELECT encoder, shard, COUNT(*) FROM entries e WHERE NOT EXISTS "
            "(SELECT 1 FROM keep k WHERE k.digest = e.digest) GROUP BY encoder, shard").fetchall()
        report = {"images_dropped": sum(c for _, _, c in dead), "shards_deleted": 0, "shards_rewritten": 0,
                  "bytes_freed": 0}
        if dry_run:
            return report
        for encoder, shard, _ in dead:
            total, size = self.db.execute("SELECT rows, bytes FROM shards WHERE encoder = ? AND name = ?",
                                          (encoder, shard)).fetchone()
            live = self.db.execute("SELECT digest FROM entries e WHERE encoder = ? AND shard = ? AND EXISTS "
                                   "(SELECT 1 FROM keep k WHERE k.digest = e.digest)",
                                   (encoder, shard)).fetchall()
            path = self.shard_path(encoder, shard)
            if live and len(live) * 2 >= total:  # mostly live: keep the file, forget the dead rows
                with self.db:
                    self.db.execute(
                        "DELETE FROM entries WHERE encoder = ? AND shard = ? AND NOT EXISTS "
                        "(SELECT 1 FROM keep k WHERE k.digest = entries.digest)", (encoder, shard))
                continue
            if live:
                self._rewrite(encoder, shard, {d for (d,) in live})
                report["shards_rewritten"] += 1
            else:
                report["shards_deleted"] += 1
            with self.db:
                self.db.execute("DELETE FROM entries WHERE encoder = ? AND shard = ?", (encoder, shard))
                self.db.execute("DELETE FROM shards WHERE encoder = ? AND name = ?", (encoder, shard))
            path.unlink(missing_ok=True)
            report["bytes_freed"] += size
        return report

    def drop_encoder(self, encoder: str, dry_run: bool = False) -> dict:
        """Drop every row, shard and file of `encoder` (one no run asks for any more: an older
        backbone, or the key before a Pillow upgrade changed the resize)."""
        images = self.db.execute("SELECT COUNT(*) FROM entries WHERE encoder = ?", (encoder,)).fetchone()[0]
        shards, size = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM shards WHERE encoder = ?", (encoder,)).fetchone()
        files = [self.root / "encoders" / f"{encoder}{suffix}" for suffix in (".json", ".tflite")]
        folder = self.shard_dir(encoder)
        if not (images or shards or folder.is_dir() or any(f.exists() for f in files)):
            raise StoreError(f"{self.root}: no encoder {encoder!r} in the store (`stats` lists them)")
        report = {"encoder": encoder, "images_dropped": images, "shards_deleted": shards, "bytes_freed": size}
        if dry_run:
            return report
        # One rename commits the drop: before it the encoder is whole; after it, whatever a kill
        # leaves is finished by the next FeatureStore opened here (`finish_drops`).
        doomed = self.root / f"{_DROPPING}{encoder}"
        if folder.is_dir():
            os.replace(folder, doomed)
        else:
            doomed.mkdir()
        self._finish_drop(encoder)
        return report

    def finish_drops(self) -> None:
        """Complete every encoder drop that a kill interrupted after its commit."""
        for doomed in sorted(self.root.glob(f"{_DROPPING}*")):
            self._finish_drop(doomed.name.removeprefix(_DROPPING))

    def _finish_drop(self, encoder: str) -> None:
        with self.db:
            self.db.execute("DELETE FROM entries WHERE encoder = ?", (encoder,))
            self.db.execute("DELETE FROM shards WHERE encoder = ?", (encoder,))
        for suffix in (".json", ".tflite"):
            (self.root / "encoders" / f"{encoder}{suffix}").unlink(missing_ok=True)
        shutil.rmtree(self.root / f"{_DROPPING}{encoder}", ignore_errors=True)

    def _rewrite(self, encoder: str, shard: str, live: set[str]) -> None:
        contents = read_shard(self.shard_path(encoder, shard))
        keep = np.array([str(d) in live for d in contents.digests])
        name = f"{shard}-gc{int(time.time())}"
        write_shard(self.shard_path(encoder, name), ShardContents(*(getattr(contents, f)[keep] for f in (
            "digests", "features", "usable", "dhash", "problems"))))
        with self.db:  # the live rows move to the new shard before the old one is dropped
            self.db.execute("DELETE FROM entries WHERE encoder = ? AND shard = ?", (encoder, shard))
        self.add_shard(encoder, name)


def _by_shard(rows: Iterable[tuple]) -> Iterator[tuple[str, list[tuple]]]:
    """Consecutive rows with the same first column, as (that value, the rows)."""
    group: list[tuple] = []
    for row in rows:
        if group and row[0] != group[0][0]:
            yield group[0][0], group
            group = []
        group.append(row)
    if group:
        yield group[0][0], group
