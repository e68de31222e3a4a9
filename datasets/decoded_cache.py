"""Each distinct image decoded once, at the training size, into a memory-mapped file.

Balancing draws the same originals many times an epoch (10,000 draws of a
label with 45 images), so decoding on every draw would spend the epoch in PNG
and JPEG decoders. Instead every file is read once through the data layer's
loader, in parallel threads, resized, and stored in an `.npy` file on disk that
the pipeline maps into memory: pages come and go under the OS's control, the
process never holds the whole set, and the next run with the same files and
size reuses the file (the cache folder keeps the few most recently used such
files: datasets/derived_files.py). A file that fails to decode is left out with
a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.derived_files import DECODED, mark_used, prune
from datasets.image_hash import difference_hash
from datasets.images import DEFAULT_MAX_PIXELS, ImageError, load_resized, resize_fingerprint

log = logging.getLogger(__name__)

_FORMAT_VERSION = 2
_CHUNK = 1024  # images in flight at once: bounds the memory of pending results


@dataclass(frozen=True)
class DecodedImages:
    pixels: np.ndarray  # uint8 [n, height, width, 3], memory-mapped
    usable: np.ndarray  # bool [n]: False where the file could not be decoded
    problems: tuple[str, ...]
    path: Path
    dhash: np.ndarray  # int64 [n], of the resized image: for grouping near-copies


def decode_all(paths: Sequence[Path], size: tuple[int, int], cache_dir: str | os.PathLike,
               threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS,
               progress: bool = True) -> DecodedImages:
    """Decoded images at `size` (height, width), built once and reused while the files are unchanged."""
    cache_dir = Path(cache_dir)
    key = _cache_key(paths, size)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not mark_used(array_path, meta_path):
        _build(paths, size, array_path, meta_path, threads or os.cpu_count() or 1, max_pixels, progress)
    prune(cache_dir, DECODED)
    meta = json.loads(meta_path.read_text())
    problems = tuple(meta["problems"])
    for problem in problems:
        log.warning("skipped corrupt image: %s", problem)
    return DecodedImages(np.load(array_path, mmap_mode="r"), np.array(meta["usable"], bool),
                         problems, array_path, np.array(meta["dhash"], np.int64))


def _build(paths: Sequence[Path], size: tuple[int, int], array_path: Path, meta_path: Path,
           threads: int, max_pixels: int, progress: bool) -> None:
    array_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = array_path.with_name(array_path.name + ".tmp")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size, 3))
    usable = np.ones(len(paths), bool)
    dhash = np.zeros(len(paths), np.int64)
    problems: list[str] = []

    def decode(i: int) -> tuple[int, np.ndarray | None, str | None]:
        try:
            return i, load_resized(paths[i], size, max_pixels), None
        except ImageError as err:
            return i, None, str(err)

    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(paths), desc="decode", unit="img",
                                                   disable=not progress) as bar:
        for start in range(0, len(paths), _CHUNK):
            for i, array, problem in pool.map(decode, range(start, min(start + _CHUNK, len(paths)))):
                if array is None:
                    usable[i] = False
                    problems.append(problem)
                else:
                    pixels[i] = array
                    dhash[i] = difference_hash(array)
            bar.update(min(_CHUNK, len(paths) - start))
    pixels.flush()
    del pixels
    os.replace(tmp, array_path)
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps({"version": _FORMAT_VERSION, "size": list(size),
                                    "usable": usable.tolist(), "dhash": dhash.tolist(),
                                    "problems": problems}))
    os.replace(meta_tmp, meta_path)


def _cache_key(paths: Sequence[Path], size: tuple[int, int]) -> str:
    """Changes when any file, its size or its modification time, the target size or the installed
    resize (`resize_fingerprint`) changes."""
    resize = resize_fingerprint(tuple(size))
    digest = hashlib.sha256(f"v{_FORMAT_VERSION} {size[0]}x{size[1]} {resize}\n".encode())
    for path in paths:
        digest.update(file_fingerprint(path))
    return f"{DECODED}{size[0]}x{size[1]}-{digest.hexdigest()[:20]}"


def file_fingerprint(path: str | os.PathLike) -> bytes:
    """Path, size and modification time: what a cache key needs to notice a changed file."""
    try:
        stat = os.stat(path)
        return f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
    except OSError:
        return f"{path}\0missing\n".encode()
