"""Tiny generated images and data folders for the tests: each author has its own drawing style."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def style_image(author: int, index: int, size: int = 32) -> Image.Image:
    """A picture whose shapes depend on the author and whose details on the index."""
    rng = np.random.default_rng(author * 100_003 + index)
    base = tuple(int(c) for c in rng.integers(150, 255, 3))
    im = Image.new("RGB", (size, size), base)
    draw = ImageDraw.Draw(im)
    for _ in range(3 + index % 4):
        x0, y0 = (int(v) for v in rng.integers(0, size - 8, 2))
        x1, y1 = x0 + int(rng.integers(4, 9)), y0 + int(rng.integers(4, 9))
        colour = tuple(int(c) for c in rng.integers(0, 120, 3))
        if author % 3 == 0:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif author % 3 == 1:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=2)
    return im


def make_tree(root: Path, authors: int = 2, titles: int = 2, per_title: int = 5,
              size: int = 32, ext: str = "png") -> list[Path]:
    """ROOT/author<a>/title<a>_<t>/ep<i>.<ext>; returns the files in import order."""
    files = []
    for a in range(authors):
        for t in range(titles):
            folder = root / f"author{a}" / f"title{a}_{t}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_title):
                path = folder / f"ep{i}.{ext}"
                style_image(a, t * 1000 + i, size).save(path)
                files.append(path)
    return files


def make_manifest(folder: Path, rows: list[dict[str, str]], name: str = "manifest.csv") -> Path:
    path = folder / name
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "title", "author", "genres"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def png_bomb(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A valid PNG header declaring a huge image over a few bytes of data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
                     + chunk(b"IEND", b""))
    return path
