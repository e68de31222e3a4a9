"""Images' content digests, remembered by path, size and mtime so that a rerun reads no bytes.

The store is keyed by what an image is (SHA-256 of its bytes), not where it lies: the same file
under two paths, two manifests or two catalogs is encoded once, and a moved file is not encoded
again. Hashing reads every byte once; the digest is then remembered in the store's `files`
table against the file's size and mtime, and a later run only stats the file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from tqdm import tqdm

from datasets.features.store import FeatureStore

_CHUNK = 20_000  # paths looked up and hashed at a time: bounds memory
_MIN_RUN = 32  # files a pool task takes at least
T = TypeVar("T")


def absolute_path(path: str | os.PathLike, cwd: str | None = None) -> str:
    """`str(Path(path).absolute())`, the files table's key, without pathlib's parsing where the
    path is already in its form (a third of the digests' time for small files)."""
    text = os.fspath(path)
    candidate = text if text.startswith("/") else os.path.join(cwd or os.getcwd(), text)
    if "//" in candidate or "/." in candidate or candidate.endswith("/"):
        return str(Path(text).absolute())
    return candidate


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


def _map_in_runs(pool: ThreadPoolExecutor, threads: int, function: Callable[[str], T],
                 items: list[str]) -> list[T]:
    """`function` over `items`, each pool task taking a run of them: a future per small file costs
    more than hashing it (2,048 icons: 250 ms a future each, 60 ms in one thread), and runs
    still let several threads wait on a slow disk at once."""
    runs = max(1, min(len(items) // _MIN_RUN, 4 * threads))
    bounds = [len(items) * k // runs for k in range(runs + 1)]
    parts = pool.map(lambda k: [function(item) for item in items[bounds[k]:bounds[k + 1]]], range(runs))
    return [result for part in parts for result in part]


def content_digests(store: FeatureStore, paths: Sequence[str | os.PathLike], threads: int = 0,
                    progress: bool = True) -> list[str | None]:
    """SHA-256 of each file's bytes (None where it cannot be read), remembered in the store."""
    out: list[str | None] = [None] * len(paths)
    db = store.db
    threads = threads or min(8, 2 * (os.cpu_count() or 1))
    with ThreadPoolExecutor(threads) as pool, \
            tqdm(total=len(paths), desc="digest", unit="file", disable=not progress) as bar:
        for start in range(0, len(paths), _CHUNK):
            cwd = os.getcwd()
            chunk = [absolute_path(p, cwd) for p in paths[start:start + _CHUNK]]
            stats = _map_in_runs(pool, threads, _stat, chunk)
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
            hashed = _map_in_runs(pool, threads, _sha256, [chunk[i] for i in todo])
            with db:
                db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?)",
                               [(chunk[i], *stats[i], digest) for i, digest in zip(todo, hashed, strict=True)
                                if digest is not None])
            for i, digest in zip(todo, hashed, strict=True):
                out[start + i] = digest
            bar.update(len(chunk))
    return out
