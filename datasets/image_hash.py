"""Perceptual hashes for grouping near-copies: the 64-bit dHash and Hamming search over hashes.

The dHash is Pillow 13's `image.convert("L").resize((9, 8), LANCZOS)` followed by comparing
neighbours, computed here from the RGB pixels with Pillow's integer arithmetic (ITU-R 601 grey
levels rounded like `convert("L")`; Lanczos-3 coefficients rounded to 22-bit fixed point; each
pass rounded and clipped to 8 bits, in the order Pillow 13 runs them), so every hash is
bit-identical to what the stores and catalogs already hold (tests/test_image_hash.py checks it
against Pillow on square, wide, tall and tiny images). Owning it also keeps the hash from moving
with the installed Pillow: before 13, Pillow resized tall images across first.
Each pass is one matrix product: its sums are integers far below 2**53, which BLAS adds exactly
in any order. It takes 0.26 ms against Pillow's 0.44 ms on a 320 px image, on the cores that
run the network while the store encodes (docs/benchmarks.md, eleventh session). Given a Pillow
image, the grey levels are Pillow's own `convert("L")` (in C, about twice as fast as numpy's) once
this process has checked on a probe picture that Pillow's grey formula is still the one above;
otherwise numpy computes them, so the hash never moves with Pillow.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

_PRECISION_BITS = 22  # Pillow's 8-bit resampling: 32 - 8 - 2
_LANCZOS_SUPPORT = 3.0
# Pillow's L24: R * 19595 + G * 38470 + B * 7471 + 0x8000, then >> 16. Sums stay below 2**24,
# so float32 holds them exactly.
_GREY_WEIGHTS = np.array([[19595.0], [38470.0], [7471.0]], np.float32)
_HASH_ROWS, _HASH_COLUMNS = 8, 9  # 8 rows of 9 grey cells: 8 x 8 neighbour comparisons
# Pixels per block of rows: the block's float copies (about 0.75 MB) stay in a core's L2, which made
# a 4000x3000 source's hash 1.8x and a 1000x1400 one 1.6x faster than blocks of 256 rows
# (docs/benchmarks.md, twelfth session); it also bounds the copies of any large source.
_BLOCK_PIXELS = 32768


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    """Pillow's `lanczos_filter` in the same double-precision steps (libm's sin, as Pillow's C)."""
    if not -_LANCZOS_SUPPORT <= x < _LANCZOS_SUPPORT:
        return 0.0
    return _sinc(x) * _sinc(x / 3)


@functools.lru_cache(maxsize=128)
def lanczos_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[in_size, out_size] fixed-point Lanczos weights of a 1-D resize, as Pillow computes them
    (`precompute_coeffs` then `normalize_coeffs_8bpc`), held in float64 (exact integers)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filter_scale
    inverse = 1.0 / filter_scale  # Pillow multiplies by the inverse: the same roundings
    matrix = np.zeros((in_size, out_size))
    for out in range(out_size):
        center = (out + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        count = min(int(center + support + 0.5), in_size) - first
        weights = [_lanczos((x + first - center + 0.5) * inverse) for x in range(count)]
        total = 0.0
        for w in weights:  # Pillow's order of additions: the normalised weights round the same
            total += w
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            matrix[first + x, out] = int(w * (1 << _PRECISION_BITS) + (0.5 if w >= 0 else -0.5))
    matrix.flags.writeable = False
    return matrix


def _resample(levels: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """One pass over the last axis of `levels` (exact integers), rounded like Pillow's."""
    return _rounded(levels @ matrix)


def _rounded(sums: np.ndarray) -> np.ndarray:
    """22-bit fixed-point sums to 8-bit levels: half up, clipped to 0..255 (Pillow's `clip8`)."""
    sums = sums + (1 << (_PRECISION_BITS - 1))
    return np.clip(np.floor(sums * (1.0 / (1 << _PRECISION_BITS))), 0, 255)


@functools.lru_cache(maxsize=1)
def pillow_grey_agrees() -> bool:
    """Whether this Pillow's `convert("L")` gives `grey_levels` exactly, on a probe of 65,536 pixels
    (every red and green level together, blue stepped through all 256): about 3 ms, once a process."""
    index = np.arange(1 << 16)
    probe = np.stack([index & 255, index >> 8, (index * 37 + 11) & 255], -1).astype(np.uint8)
    probe = probe.reshape(256, 256, 3)
    pillow = np.asarray(Image.fromarray(probe, "RGB").convert("L"), np.float32)
    return bool(np.array_equal(pillow, grey_levels(probe)))


def grey_levels(pixels: np.ndarray) -> np.ndarray:
    """Pillow's `convert("L")` of uint8 RGB [H, W, 3], as exact float32 integers [H, W]."""
    flat = pixels.reshape(-1, 3).astype(np.float32) @ _GREY_WEIGHTS
    flat += 0x8000
    flat *= np.float32(1 / 65536)
    return np.floor(flat, out=flat).reshape(pixels.shape[:2])


def _grey_rows(image: Image.Image | np.ndarray) -> tuple[tuple[int, int], Callable[[int, int], np.ndarray]]:
    """(height, width) and a function of (first, last) giving those rows' grey levels: from Pillow's
    grey image when Pillow computes them alike (`pillow_grey_agrees`), else `grey_levels` of the rows."""
    if isinstance(image, Image.Image):
        image = image if image.mode == "RGB" else image.convert("RGB")
        if image.width and image.height and pillow_grey_agrees():
            grey = np.asarray(image.convert("L"), np.uint8)
            return grey.shape, lambda first, last: grey[first:last]
    pixels = np.asarray(image, np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3 or not pixels.size:
        raise ValueError(f"difference_hash takes RGB pixels [height, width, 3], got shape {pixels.shape}")
    return pixels.shape[:2], lambda first, last: grey_levels(pixels[first:last])


def difference_hash(image: Image.Image | np.ndarray) -> int:
    """64-bit dHash of an RGB image (Pillow image or uint8 [H, W, 3]) as a signed int64 (fits
    SQLite INTEGER); near-duplicates differ in few bits."""
    (height, width), grey_rows = _grey_rows(image)
    down, across = lanczos_matrix(height, _HASH_ROWS), lanczos_matrix(width, _HASH_COLUMNS)
    # Pillow skips a pass whose size does not change (there is no rounding in it to copy).
    resize_down, resize_across = height != _HASH_ROWS, width != _HASH_COLUMNS
    rows = max(1, _BLOCK_PIXELS // width)
    starts = range(0, height, rows)
    greys = (grey_rows(start, start + rows).astype(np.float64) for start in starts)
    if height > _HASH_ROWS and 2 * (width - _HASH_COLUMNS) < height - _HASH_ROWS:
        # Pillow 13 resizes such images down first, then across; each pass rounds.
        sums = sum(down[start : start + rows].T @ grey
                   for start, grey in zip(starts, greys, strict=True))
        cells = _rounded(sums)  # [8, W]
        cells = _resample(cells, across) if resize_across else cells
    else:
        cells = np.concatenate([_resample(grey, across) if resize_across else grey for grey in greys])
        cells = _resample(cells.T, down).T if resize_down else cells
    bits = (cells[:, 1:] > cells[:, :-1]).ravel()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value


def hamming_within(left: np.ndarray, right: np.ndarray, max_distance: int,
                   chunk: int = 2048) -> list[tuple[int, int, int]]:
    """Index pairs (i, j, distance) with popcount(left[i] ^ right[j]) <= max_distance."""
    a = np.asarray(left, dtype=np.int64).view(np.uint64)
    b = np.asarray(right, dtype=np.int64).view(np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk, None] ^ b[None, :]
        distance = np.bitwise_count(block)
        rows, cols = np.nonzero(distance <= max_distance)
        pairs.extend((start + int(i), int(j), int(distance[i, j])) for i, j in zip(rows, cols, strict=False))
    return pairs
