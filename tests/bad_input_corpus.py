"""The bad-input corpus, generated at test time: files a user might hand any entry point.

Each case is (path, problem): `problem` is what the one error line must say about the file,
or None for unusual input that must be answered normally (CMYK, 16-bit, animation, EXIF
rotation, odd names).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.imagegen import png_bomb, style_image


@dataclass(frozen=True)
class Case:
    name: str
    path: Path
    problem: str | None  # None: the file must be accepted


def _png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def image_cases(folder: Path, seed: int = 0) -> list[Case]:
    """At least 20 kinds of image input, written under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    base = style_image(seed % 3, 900 + seed, 48)
    cases: list[Case] = []

    def add(name: str, problem: str | None, data: bytes | None = None, image: Image.Image | None = None,
            **options) -> None:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        elif image is not None:
            image.save(path, **options)
        cases.append(Case(name, path, problem))

    whole_png = _png(base)
    add("truncated.png", "truncated or corrupt", whole_png[: len(whole_png) // 2])
    jpeg = io.BytesIO()
    base.save(jpeg, "JPEG", quality=90)
    add("truncated.jpg", "truncated or corrupt", jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    add("zero.png", "empty file", b"")
    png_bomb(folder / "bomb.png")
    cases.append(Case("bomb.png", folder / "bomb.png", "decompression bomb"))
    add("huge.png", "decompression bomb", _png(Image.new("1", (8000, 8000))))
    add("text.png", "not an image", b"just some words, not a picture\n")
    add("vector.png", "not an image",
        b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" height="8"/></svg>')
    (folder / "folder.png").mkdir(exist_ok=True)
    cases.append(Case("folder.png (a directory)", folder / "folder.png", "is a directory"))
    cases.append(Case("missing.png", folder / "missing.png", "no such file"))
    loop_a, loop_b = folder / "loop_a.png", folder / "loop_b.png"
    for link, target in ((loop_a, loop_b), (loop_b, loop_a)):
        if not link.is_symlink():
            os.symlink(target.name, link)
    cases.append(Case("loop_a.png (a symlink loop)", loop_a, "symlink loop"))
    add("cmyk.jpg", None, image=base.convert("CMYK"))
    add("grey16.png", None, image=base.convert("L").point(lambda v: v * 256, mode="I").convert("I;16"))
    palette = base.convert("RGBA")
    palette.putpixel((0, 0), (0, 0, 0, 0))
    add("palette-alpha.png", None, image=palette.convert("P", palette=Image.Palette.ADAPTIVE),
        transparency=0)
    add("animated.gif", None, image=base, save_all=True, append_images=[base.rotate(90)], duration=80)
    add("animated.webp", None, image=base, save_all=True, append_images=[base.rotate(90)], duration=80)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: the loader turns it upright
    add("exif-rotated.jpg", None, image=base, exif=exif.tobytes())
    add("one-pixel.png", None, image=Image.new("RGB", (1, 1), (200, 30, 30)))
    add("name with spaces.png", None, image=base)
    add("名前-ünïcödé.png", None, image=base)
    add("new\nline.png", None, image=base)
    return cases
