"""Images' content digests, remembered by path, size and mtime so that a rerun reads no bytes.

The store is keyed by what an image is (SHA-256 of its bytes), not where it lies: the same file
under two paths, two manifests or two catalogs is encoded once, and a moved file is not encoded
again. Hashing reads every byte once; the digest is then remembered in the store's `files`
table against the file's size and mtime, and a later run only stats the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from datasets.features.store import FeatureStore

_CHUNK = 20_000  # paths looked up and hashed at a time: bounds memory


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes, read a megabyte at a time; OSError if it cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def content_digests(store: FeatureStore, paths: Sequence[str | os.PathLike], threads: int = 0,
                    progress: bool = True) -> list[str | None]:
    """SHA-256 of each file's bytes (None where it cannot be read), remembered in the store."""
    out: list[str | None] = [None] * len(paths)
    db = store.db
    with ThreadPoolExecutor(threads or min(8, 2 * (os.cpu_count() or 1))) as pool, \
            tqdm(total=len(paths), desc="digest", unit="file", disable=not progress) as bar:
        for start in range(0, len(paths), _CHUNK):
            chunk = [str(Path(p).absolute()) for p in paths[start:start + _CHUNK]]
            stats = list(pool.map(_stat, chunk))
            known = {}
            for i in range(0, len(chunk), 900):  # SQLite's parameter limit
                part = chunk[i:i + 900]
                marks = ",".join("?" * len(part))
                known.update((row[0], row[1:]) for row in db.execute(
                    f"SELECT path, size, mtime_ns, digest FROM files WHERE path IN ({marks})", part))
            todo = []
            for i, (path, st) in enumerate(zip(chunk, stats, strict=True)):
                remembered = known.get(path)
                if st is not None and remembered and tuple(remembered[:2]) == st:
                    out[start + i] = remembered[2]
                elif st is not None:
                    todo.append(i)
            hashed = list(pool.map(_sha256, [chunk[i] for i in todo]))
            with db:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                               [(chunk[i], *stats[i], digest) for i, digest in zip(todo, hashed, strict=True)
                                if digest is not None])
            for i, digest in zip(todo, hashed, strict=True):
                out[start + i] = digest
            bar.update(len(chunk))
    return out
