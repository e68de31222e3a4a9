"""The dHash computed with numpy is Pillow's, bit for bit (near-copy search: tests/test_images.py)."""

from __future__ import annotations

import numpy as np
import PIL
import pytest
from PIL import Image

from datasets.image_hash import difference_hash, grey_levels, pillow_grey_agrees

LANCZOS = Image.Resampling.LANCZOS
PILLOW_13 = int(PIL.__version__.split(".")[0]) >= 13


def bits_of(cells: np.ndarray) -> int:
    """The reference: neighbour comparisons of Pillow's 9 x 8 grey cells, read as a signed int64."""
    value = 0
    for bit in (cells[:, 1:].astype(int) > cells[:, :-1]).ravel():
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= (1 << 63) else value


def pillow_hash(image: Image.Image) -> int:
    return bits_of(np.asarray(image.convert("L").resize((9, 8), LANCZOS)))


def pixels_of(height: int, width: int, kind: int, rng: np.random.Generator) -> np.ndarray:
    """Noise, hard black-and-white edges, and smooth ramps: each stresses different roundings."""
    if kind == 0:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if kind == 1:
        return np.repeat(rng.integers(0, 2, (height, width, 1), dtype=np.uint8) * 255, 3, axis=2)
    rows, cols = np.mgrid[0:height, 0:width]
    ramps = [(cols * 7 + rows * 3) % 256, (cols * rows) % 256, (rows * 11) % 256]
    return np.stack(ramps, -1).astype(np.uint8)


SQUARE_AND_WIDE = [(320, 320), (64, 64), (1, 1), (8, 9), (8, 40), (9, 9), (3, 17), (37, 1000),
                   (240, 320), (900, 600), (1300, 2500), (20, 24), (100, 400)]
TALL = [(9, 8), (17, 3), (1000, 37), (2500, 1300), (700, 346), (40, 24), (12, 10), (4000, 30)]


@pytest.mark.parametrize("shape", SQUARE_AND_WIDE + TALL)
def test_hash_is_two_pillow_passes_in_pillows_order(shape):
    """Each pass equals Pillow's one-axis resize, whatever Pillow's version does with the order."""
    rng = np.random.default_rng(sum(shape))
    height, width = shape
    for kind in range(3):
        pixels = pixels_of(height, width, kind, rng)
        grey = Image.fromarray(pixels).convert("L")
        down_first = height > 8 and 2 * (width - 9) < height - 8
        first = grey.resize((width, 8) if down_first else (9, height), LANCZOS)
        assert difference_hash(pixels) == bits_of(np.asarray(first.resize((9, 8), LANCZOS)))


@pytest.mark.parametrize("shape", SQUARE_AND_WIDE + (TALL if PILLOW_13 else []))
def test_hash_equals_pillows_own_resize(shape):
    rng = np.random.default_rng(sum(shape) + 1)
    for kind in range(3):
        pixels = pixels_of(*shape, kind, rng)
        image = Image.fromarray(pixels)
        assert difference_hash(pixels) == difference_hash(image) == pillow_hash(image)


def test_grey_levels_are_pillows_convert_l():
    pixels = np.random.default_rng(0).integers(0, 256, (300, 200, 3), dtype=np.uint8)
    pixels[0, :3] = [[255, 255, 255], [0, 0, 0], [255, 0, 128]]  # the extremes of the sums
    assert np.array_equal(grey_levels(pixels), np.asarray(Image.fromarray(pixels).convert("L")))


def test_a_pillow_whose_grey_differs_is_not_asked_for_it(monkeypatch):
    """Given a Pillow image, the hash takes Pillow's grey levels only while Pillow's formula is ours:
    a release with another one (here Rec. 709 weights) leaves every hash as it was."""
    real_convert = Image.Image.convert

    def rec709_grey(self, mode=None, *args, **kwargs):
        if mode == "L" and self.mode == "RGB":
            levels = np.asarray(self, np.float64) @ np.array([0.2126, 0.7152, 0.0722])
            return Image.fromarray(np.round(levels).astype(np.uint8), "L")
        return real_convert(self, mode, *args, **kwargs)

    pixels = pixels_of(90, 70, 0, np.random.default_rng(3))
    expected = difference_hash(pixels)
    assert pillow_grey_agrees() and difference_hash(Image.fromarray(pixels)) == expected
    monkeypatch.setattr(Image.Image, "convert", rec709_grey)
    pillow_grey_agrees.cache_clear()
    try:
        other = np.asarray(Image.fromarray(pixels).convert("L"))
        assert not np.array_equal(other, grey_levels(pixels))  # the stand-in does differ
        assert not pillow_grey_agrees()
        assert difference_hash(Image.fromarray(pixels)) == expected
    finally:
        pillow_grey_agrees.cache_clear()


def test_other_modes_hash_as_their_rgb():
    rgb = pixels_of(50, 70, 2, np.random.default_rng(1))
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    assert difference_hash(rgba) == difference_hash(rgb) == pillow_hash(Image.fromarray(rgb))


def test_pixels_that_are_not_rgb_are_refused():
    for shape in [(8, 9), (8, 9, 4), (0, 9, 3)]:
        with pytest.raises(ValueError, match="RGB pixels"):
            difference_hash(np.zeros(shape, np.uint8))
