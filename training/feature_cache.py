"""Each image encoded once by a frozen backbone, its features kept in a memory-mapped file.

Training no longer encodes through this module: the feature store (`datasets.features`,
`training.stored_features`) replaced it. It stays as the baseline that
`benchmarks/catalog_scale.py` measures the store against (the Keras backbone, one file per
run), and `EncodedImages` is what both hand the trainer.

A frozen backbone gives the same features every epoch, so frozen training encodes every
image once (decoding, resizing and the network, in parallel threads) and trains the heads
on the stored rows. The file is named by a key over the image files (path, size, mtime),
the input size and the backbone's identity (name, options, weights file digest), so that a
change to any of them builds a new file, and an unchanged run reuses the old one. Each
image's dHash is kept beside its features, for carving validation without reading again.
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

from datasets.decoded_cache import file_fingerprint
from datasets.image_hash import difference_hash
from datasets.images import DEFAULT_MAX_PIXELS, ImageError, load_resized

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_BATCH = 64  # images per forward pass
_CHUNK = 512  # images decoded ahead


@dataclass(frozen=True)
class EncodedImages:
    features: np.ndarray  # float16 [n, dim], memory-mapped (zeros where unusable)
    usable: np.ndarray  # bool [n]: False where the file could not be decoded
    dhash: np.ndarray  # int64 [n]
    problems: tuple[str, ...]
    path: Path
    built: bool  # encoded in this call, not reused


def encode_all(paths: Sequence[Path], size: tuple[int, int], encoder, identity: str,
               cache_dir: str | os.PathLike, threads: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS,
               progress: bool = True) -> EncodedImages:
    """Features of every image under `encoder` (a Keras model, images 0-1 -> [dim]), cached."""
    cache_dir = Path(cache_dir)
    key = _cache_key(paths, size, identity)
    array_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    built = not (array_path.is_file() and meta_path.is_file())
    if built:
        _build(paths, size, encoder, array_path, meta_path, threads or os.cpu_count() or 1, max_pixels,
               progress)
    else:
        log.info("reusing encoded features %s", array_path)
    meta = json.loads(meta_path.read_text())
    problems = tuple(meta["problems"])
    for problem in problems:
        log.warning("skipped corrupt image: %s", problem)
    return EncodedImages(np.load(array_path, mmap_mode="r"), np.array(meta["usable"], bool),
                         np.array(meta["dhash"], np.int64), problems, array_path, built)


def _build(paths, size, encoder, array_path: Path, meta_path: Path, threads: int, max_pixels: int,
           progress: bool) -> None:
    array_path.parent.mkdir(parents=True, exist_ok=True)
    dim = int(encoder.output_shape[-1])
    tmp = array_path.with_name(f"{array_path.name}.{os.getpid()}.tmp")
    features = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(paths), dim))
    usable = np.zeros(len(paths), bool)
    dhash = np.zeros(len(paths), np.int64)
    problems: list[str] = []

    def decode(i: int):
        try:
            pixels = load_resized(paths[i], size, max_pixels)
            return i, pixels, difference_hash(pixels), None
        except ImageError as err:
            return i, None, 0, str(err)

    with ThreadPoolExecutor(threads) as pool, tqdm(total=len(paths), desc="encode", unit="img",
                                                   disable=not progress) as bar:
        for start in range(0, len(paths), _CHUNK):  # a chunk at a time bounds decoded memory
            decoded = []
            for i, pixels, digest, problem in pool.map(decode, range(start, min(start + _CHUNK, len(paths)))):
                if pixels is None:
                    problems.append(problem)
                else:
                    usable[i], dhash[i] = True, digest
                    decoded.append((i, pixels))
            for first in range(0, len(decoded), _BATCH):
                batch = decoded[first:first + _BATCH]
                images = np.stack([p for _, p in batch]).astype(np.float32) / 255.0
                features[[i for i, _ in batch]] = np.asarray(encoder.predict_on_batch(images), np.float32)
            bar.update(min(_CHUNK, len(paths) - start))
    features.flush()
    del features
    os.replace(tmp, array_path)
    meta_tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"version": _FORMAT_VERSION, "size": list(size), "dim": dim,
                                    "usable": usable.tolist(), "dhash": dhash.tolist(),
                                    "problems": problems}))
    os.replace(meta_tmp, meta_path)


def _cache_key(paths: Sequence[Path], size: tuple[int, int], identity: str) -> str:
    digest = hashlib.sha256(f"v{_FORMAT_VERSION} {size[0]}x{size[1]}\n{identity}\n".encode())
    for path in paths:
        digest.update(file_fingerprint(path))
    return f"features-{size[0]}x{size[1]}-{digest.hexdigest()[:20]}"
