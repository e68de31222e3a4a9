"""The style map drawn over its image: each cell tinted with its likeliest listed author's colour
(stronger where that author is likelier), each author's strongest window outlined, and a legend.

Written by `inference.similar --explain DIR`, shown by the reports, and drawn the same way by the
web page (inference/static) from the API's `style_map`.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from inference.style_map import mixed_summary

# Distinct on white and on dark art; the web page uses the same list.
COLOURS = ((230, 25, 75), (0, 130, 200), (60, 180, 75), (245, 130, 48), (145, 30, 180), (70, 240, 240))
MAX_ALPHA = 150  # of 255: the art stays visible under the strongest tint
MIN_SIDE = 256  # small images (icons) are enlarged so the grid and the legend can be read
MAX_SIDE = 2048  # and large ones (or a 1-pixel-high strip enlarged) kept to a readable file


def render_overlay(image: Image.Image, style_map: dict, mixed: list[dict] | None = None) -> Image.Image:
    """RGB picture: `image` with the map over it and a legend strip below."""
    base = image.convert("RGB")
    scale = min(max(1.0, MIN_SIDE / min(base.size)), MAX_SIDE / max(base.size))
    if scale != 1:
        size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
        base = base.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BOX)
    names = list(style_map["authors"])
    maps = np.array([style_map["authors"][name] for name in names])  # [authors, rows, cols]
    rows, cols = style_map["grid"]
    winner, strength = maps.argmax(axis=0), maps.max(axis=0)
    tint = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(tint)
    cell_w, cell_h = base.width / cols, base.height / rows
    for r in range(rows):
        for c in range(cols):
            colour = COLOURS[winner[r, c] % len(COLOURS)]
            x0, y0 = round(c * cell_w), round(r * cell_h)
            box = (x0, y0, max(x0, round((c + 1) * cell_w) - 1), max(y0, round((r + 1) * cell_h) - 1))
            draw.rectangle(box, fill=(*colour, int(MAX_ALPHA * strength[r, c])))
    for i, name in enumerate(names):
        x0, y0, x1, y1 = (round(v * scale) for v in style_map["box"][name])
        draw.rectangle(
            (x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)),
            outline=(*COLOURS[i % len(COLOURS)], 255),
            width=max(2, round(scale)) if scale >= 1 else 2,
        )
    shown = Image.alpha_composite(base.convert("RGBA"), tint).convert("RGB")
    return _with_legend(shown, names, maps, mixed)


def _with_legend(
    picture: Image.Image, names: list[str], maps: np.ndarray, mixed: list[dict] | None
) -> Image.Image:
    font = ImageFont.load_default()
    line = 16
    lines = [
        (COLOURS[i % len(COLOURS)], f"{name}  (best region {maps[i].max():.0%})")
        for i, name in enumerate(names)
    ]
    # the default bitmap font is about 6 px a character: wrap the note to the picture's width
    notes = textwrap.wrap(mixed_summary(mixed) or "one style", max(20, (picture.width - 8) // 6))
    height = picture.height + line * (len(lines) + len(notes)) + 8
    canvas = Image.new("RGB", (picture.width, height), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    y = picture.height + 4
    for colour, text in lines:
        draw.rectangle((4, y + 2, 14, y + 12), fill=colour)
        draw.text((20, y), text, fill="black", font=font)
        y += line
    for note in notes:
        draw.text((4, y), note, fill="black", font=font)
        y += line
    return canvas


def write_overlay(path: Path, image: Image.Image, style_map: dict, mixed: list[dict] | None) -> Path:
    """Write the overlay PNG whole (a temporary name renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    render_overlay(image, style_map, mixed).save(tmp, format="PNG")
    tmp.replace(path)
    return path
