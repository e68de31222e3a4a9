"""The one image loader: every stage reads pictures through `load_image`.

It turns whatever a site or a folder hands us (transparency, palettes, CMYK,
16-bit, EXIF rotation, animations) into a plain 8-bit RGB picture, and rejects
what cannot be trusted with an `ImageError` whose message is one line naming
the file and the problem.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

from datasets.features.digests import file_sha256 as bytes_sha256
from datasets.image_hash import difference_hash

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})

# 40 megapixels is far above any thumbnail or poster and far below what would
# exhaust memory when decoded (40M px x 4 bytes = 160 MB).
DEFAULT_MAX_PIXELS = 40_000_000

_TRANSPARENT_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_WHITE = (255, 255, 255)


class ImageError(ValueError):
    """An image that cannot be used; str() is one line naming the file."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass(frozen=True)
class ImageInfo:
    """What the catalog records about a clean image."""

    sha256: str
    width: int
    height: int
    dhash: int
    is_flat: bool


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode `path` (first frame if animated) into an upright 8-bit RGB image."""
    _check_file(path)
    return _decode(path, path, max_pixels)


def load_image_bytes(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_image` for an upload held in memory; `name` stands for the file in errors."""
    if not data:
        raise ImageError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels)


def load_resized(source: str | os.PathLike | Image.Image, size: tuple[int, int],
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """uint8 [height, width, 3]: the exact resize training and inference both feed the model."""
    return np.asarray(resized_image(source, size, max_pixels), dtype=np.uint8)


def resized_image(source: str | os.PathLike | Image.Image, size: tuple[int, int],
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """`load_resized` as an RGB Pillow image (for a caller that also hashes it with Pillow's help)."""
    image = to_rgb(source) if isinstance(source, Image.Image) else load_image(source, max_pixels)
    height, width = size
    return image.resize((width, height), Image.Resampling.LANCZOS)


@functools.lru_cache(maxsize=16)
def resize_fingerprint(size: tuple[int, int]) -> str:
    """A digest of what `load_resized` makes of four fixed pictures at `size` (height, width).

    The model's input is Pillow's Lanczos resize, and Pillow's output is not the same in every
    release: Pillow 13 resizes a tall source down first where 12 went across first, which moves
    the pixels of a 225x350 poster by up to 3 grey levels on font glyphs and up to 40 on sharp
    noise. Features are only interchangeable between machines whose resize agrees, so the
    feature store's encoder identity carries this digest: an upgrade that changes the resize
    makes a new key instead of mixing features, and a worker that resizes differently refuses
    to write into the store. The pictures cover a source taller, wider, smaller and larger than
    `size`, and a transparent one. About 10 ms at 320 px, once per process and size.
    """
    height, width = size
    shapes = ((height * 5 // 4 + 1, width // 2 + 3), (height // 2 + 3, width * 5 // 4 + 1),
              (height // 5 + 2, width // 5 + 1), (height * 3 // 2 + 1, width * 3 // 2 + 3))
    digest = hashlib.sha256(f"{height}x{width}".encode())
    for n, (h, w) in enumerate(shapes):
        # Sharp, non-periodic detail in every channel, ((x*a + y*b) ^ (x*y + 13c)) mod 256: differences
        # in rounding or pass order show. uint8 arithmetic wraps modulo 256, and +, * and ^ commute
        # with taking the low byte, so it gives the same pixels as exact integers (3x faster).
        y = (np.arange(h) % 256).astype(np.uint8)[:, None]
        x = (np.arange(w) % 256).astype(np.uint8)[None, :]
        xy = x * y
        pixels = np.empty((h, w, 4), np.uint8)
        for c in range(4):
            pixels[..., c] = (x * np.uint8(37 + 11 * c) + y * np.uint8(91 + 7 * c)) ^ (xy + np.uint8(13 * c))
        picture = Image.fromarray(pixels, "RGBA") if n == 0 else Image.fromarray(pixels[..., :3], "RGB")
        digest.update(load_resized(picture, size).tobytes())
    return digest.hexdigest()[:16]


def resize_record(size: tuple[int, int]) -> dict[str, str]:
    """What a bundle records about the resize that made its model's inputs: Pillow's release and
    `resize_fingerprint` at the bundle's input `size` (height, width)."""
    return {"pillow": PIL.__version__, "fingerprint": resize_fingerprint(tuple(size))}


def resizes_otherwise(record: dict[str, str], size: tuple[int, int]) -> bool:
    """Whether this machine resizes unlike the one that wrote `record` (`resize_record`). The same
    Pillow release is taken to resize alike, without computing the fingerprint (about 10 ms of a
    query's cold start); an empty record (a bundle from before records) is never said to differ."""
    if not record or record.get("pillow") == PIL.__version__:
        return False
    return record.get("fingerprint") != resize_fingerprint(tuple(size))


def _decode(source, path: str | os.PathLike, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that; our own
            # limit below is the one that decides, so the warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ImageError(
                        path,
                        f"decompression bomb: {width}x{height} pixels exceeds the "
                        f"limit of {max_pixels:,}",
                    )
                im.seek(0)
                im.load()
                upright = ImageOps.exif_transpose(im)
                return to_rgb(upright)
    except ImageError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageError(path, f"decompression bomb: {err}") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(path, f"truncated or corrupt image ({_short(err)})") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Flatten any Pillow mode to 8-bit RGB; transparency is composited onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        im = _wide_to_l(im)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif im.mode == "P":
        im = im.convert("RGB")
    if im.mode in _TRANSPARENT_MODES:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im.copy() if im.readonly else im


def inspect_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                  flat_tolerance: int = 2) -> ImageInfo:
    """Load `path` once and compute everything the catalog stores about it."""
    digest = file_sha256(path)
    image = load_image(path, max_pixels)
    pixels = np.asarray(image)
    spread = int((pixels.max(axis=(0, 1)).astype(int) - pixels.min(axis=(0, 1))).max())
    return ImageInfo(
        sha256=digest,
        width=image.width,
        height=image.height,
        dhash=difference_hash(pixels),
        is_flat=spread <= flat_tolerance,
    )


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file's bytes (raises ImageError if unreadable)."""
    _check_file(path)
    try:
        return bytes_sha256(path)
    except OSError as err:
        raise ImageError(path, f"unreadable ({_short(err)})") from None


def thumbnail(path: str | os.PathLike, side: int = 16,
              max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image shrunk to side x side RGB, as float32, for cheap pixel comparisons."""
    small = load_image(path, max_pixels).resize((side, side), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float32)


def is_image_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def file_problem(path: str | os.PathLike) -> str | None:
    """Why `path` is not a readable regular file, in a few words; None when it is one."""
    p = Path(path)
    try:
        info = p.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        if p.is_symlink():
            return f"broken symlink (to {os.readlink(p)})"
        if err.errno == errno.EACCES:
            return "permission denied"
        return "no such file"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, expected an image file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not os.access(p, os.R_OK):
        return "permission denied"
    if info.st_size == 0:
        return "empty file (0 bytes)"
    return None


def _check_file(path: str | os.PathLike) -> None:
    problem = file_problem(path)
    if problem:
        raise ImageError(path, problem)


def _wide_to_l(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit greyscale to 8-bit, keeping the full tonal range."""
    values = np.asarray(im, dtype=np.float64)
    top = 65535.0 if values.max(initial=0) > 255 or im.mode.startswith("I;16") else 255.0
    scaled = np.clip(np.rint(values * (255.0 / top)), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled)


def _short(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
