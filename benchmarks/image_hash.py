"""The dHash and the resize fingerprint, timed; prints JSON.

usage: python benchmarks/image_hash.py [--repeats 7]

For each shape (random pixels, one thread): `datasets.image_hash.difference_hash` as it is (rows
in blocks of `_BLOCK_PIXELS`), the same with blocks of 256 rows (the eleventh session's), and
Pillow's own `convert("L").resize((9, 8), LANCZOS)` with the neighbour comparison (what the hash
reproduces; the baselines of docs/benchmarks.md, measured in the same run). Each time is the best
of --repeats. Also `datasets.images.resize_fingerprint` at 320 px, cold (once per process).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

import datasets.image_hash as image_hash  # noqa: E402
from datasets.images import resize_fingerprint  # noqa: E402

SHAPES = [(320, 320), (600, 800), (1400, 1000), (3000, 4000)]  # (height, width)
OLD_ROWS = 256


def pillow_hash(pixels: np.ndarray) -> int:
    cells = np.asarray(Image.fromarray(pixels).convert("L").resize((9, 8), Image.Resampling.LANCZOS), int)
    value = int.from_bytes(np.packbits((cells[:, 1:] > cells[:, :-1]).ravel()).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value


def best_ms(function, pixels: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(pixels)
        times.append(time.perf_counter() - start)
    return round(min(times) * 1e3, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    resize_fingerprint((320, 320))
    fingerprint_ms = (time.perf_counter() - start) * 1e3
    block = image_hash._BLOCK_PIXELS
    rows = []
    for height, width in SHAPES:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        now = best_ms(image_hash.difference_hash, pixels, args.repeats)
        ours = image_hash.difference_hash(pixels)
        image_hash._BLOCK_PIXELS = OLD_ROWS * width  # the previous blocks of 256 rows
        try:
            old = best_ms(image_hash.difference_hash, pixels, args.repeats)
            same_as_old = image_hash.difference_hash(pixels) == ours
        finally:
            image_hash._BLOCK_PIXELS = block
        rows.append({"shape": f"{width}x{height}", "ms": now, "ms_blocks_of_256_rows": old,
                     "ms_pillow": best_ms(pillow_hash, pixels, args.repeats),
                     "same_as_256_rows": same_as_old, "same_as_pillow": pillow_hash(pixels) == ours})
    print(json.dumps({
        "benchmark": "image_hash", "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(pillow=PIL.__version__),
        "block_pixels": block, "difference_hash": rows,
        "resize_fingerprint_320_ms": round(fingerprint_ms, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
