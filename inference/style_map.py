"""Style map: where in an image each author's style is, and whether one image holds several.

The bundle's own model (LiteRT, or Keras without LiteRT files) scores square windows of the image,
each cropped and resized exactly as a whole image is: a window is a picture the model could have
been given alone. The image is cut into a grid of cells half a window wide; windows span 2 x 2
cells at every cell offset, and a cell's probability for an author is the mean over the windows
that cover it. A corner cell is seen by one window only, so a region that is one author's alone
keeps that author's own answer there.

Window side: the largest square that fits twice along the long side and once across the short
one, `min(short, long / 2)`. A square page gets quadrant-sized windows (3 x 3 of them), a pair
of panels side by side gets one window per panel and the three between (1 x 3), and a tall strip
of panels gets full-width squares down its length. Nothing is learnt, so it works the same for
every bundle: pretrained EfficientNet-Lite and `style_cnn` alike, with enrolled authors included
through the same author probabilities as a whole-image answer.

Mixed styles: an image is called mixed when windows that do not overlap are each confidently
(`MIXED_CONFIDENCE`) a different author, look unalike (their style embeddings' cosine at most
`REGION_SIMILARITY`), and each such author is the likeliest author of at least `MIN_SHARE` of the
cells. Shares are of the cells those authors hold between them. Two parts of one picture look alike
even where the heads name them differently (a zoomed-in detail is where confident wrong authors come
from), while panels by two hands do not: the embedding is trained to put one title's images together
and different titles apart. Only windows that look about as much like a known picture as the whole
image does vote: their nearest title at most `WHOLE_MARGIN` less similar than the whole image's. A
window of a single picture is a detail, less like any known picture than the whole; a panel of a
collage is a whole picture, more like a known one than the collage is (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from datasets.images import load_resized

TOP_AUTHORS = 3  # maps listed per image, besides every author a confident window names
MAX_CELLS = 16  # per side: a very long strip gets longer cells rather than hundreds of windows
# A window votes for its likeliest author when the model gives it at least this probability, and
# when its nearest title is at most WHOLE_MARGIN less similar than the whole image's; two voting
# windows are two styles when their embeddings' cosine is at most REGION_SIMILARITY (titles by
# different authors sit near 0, their 99th percentile at 0.15-0.35 in the icon and font bundles).
# Chosen together on collages of icons and of fonts (three draws each), where neighbouring values
# moved pairs and false alarms by 0.01-0.03; measured on two more draws (docs/benchmarks.md).
MIXED_CONFIDENCE = 0.15
WHOLE_MARGIN = 0.2
REGION_SIMILARITY = 0.4
MIN_SHARE = 0.25  # of the cells: a region, not a speck


@dataclass(frozen=True)
class WindowLayout:
    rows: int
    cols: int
    cell_height: float
    cell_width: float
    windows: tuple[tuple[int, int], ...]  # each window's top-left cell (row, col); it spans 2 x 2 cells

    def box(self, row: int, col: int, span: int = 2) -> tuple[int, int, int, int]:
        """Pixel box [x0, y0, x1, y1] of `span` x `span` cells from cell (row, col), at least one pixel
        each way (an image a few pixels wide has cells under a pixel)."""
        width, height = round(self.cols * self.cell_width), round(self.rows * self.cell_height)
        x0 = min(round(col * self.cell_width), width - 1)
        y0 = min(round(row * self.cell_height), height - 1)
        return (
            x0,
            y0,
            max(x0 + 1, round((col + span) * self.cell_width)),
            max(y0 + 1, round((row + span) * self.cell_height)),
        )


def window_layout(width: int, height: int) -> WindowLayout:
    side = min(min(width, height), max(width, height) / 2)
    cell = side / 2
    rows = int(min(MAX_CELLS, max(2, round(height / cell))))
    cols = int(min(MAX_CELLS, max(2, round(width / cell))))
    windows = tuple((r, c) for r in range(rows - 1) for c in range(cols - 1))
    return WindowLayout(rows, cols, height / rows, width / cols, windows)


@dataclass(frozen=True)
class StyleMap:
    grid: tuple[int, int]
    authors: dict[str, list[list[float]]]  # listed authors' rows x cols cell probabilities
    boxes: dict[str, list[int]]  # each listed author's strongest window, [x0, y0, x1, y1] pixels
    mixed: tuple[dict, ...]  # () for one style; else {author, share, box, where}, largest share first
    # every author's cell probabilities [rows, cols, authors] in bundle.all_authors order (benchmarks)
    cells: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        """The `style_map` object of the JSON answers."""
        return {"grid": list(self.grid), "authors": self.authors, "box": self.boxes}


def mixed_summary(mixed: list[dict] | tuple[dict, ...] | None) -> str:
    """'mixed styles: A (left 48 %), B (right 52 %)', or '' for one style."""
    if not mixed:
        return ""
    return "mixed styles: " + ", ".join(
        f"{part['author']} ({part['where'] + ' ' if part['where'] else ''}{round(100 * part['share'])} %)"
        for part in mixed
    )


def voting_windows(nearest: np.ndarray) -> np.ndarray:
    """From the nearest-title similarity of the whole image then of each window: which windows may
    vote for mixed styles (those that look about as much like a known picture as the whole does)."""
    return nearest[1:] >= nearest[0] - WHOLE_MARGIN


def window_pixels(image: Image.Image, layout: WindowLayout, size: tuple[int, int]) -> np.ndarray:
    """uint8 [windows, H, W, 3]: each window resized as a whole image would be."""
    return np.stack([load_resized(image.crop(layout.box(r, c)), size) for r, c in layout.windows])


def build_style_map(
    layout: WindowLayout,
    probabilities: np.ndarray,
    names: list[str],
    first: list[int] | None = None,
    votes: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
) -> StyleMap:
    """The map from each window's author probabilities [windows, authors]. `first`: authors to list
    whatever the map says (the whole image's likeliest), ahead of the map's own. `votes`: which
    windows may call the image mixed (all when None). `embeddings`: each window's unit style
    embedding, to tell two styles from two parts of one (not checked when None)."""
    sums = np.zeros((layout.rows, layout.cols, probabilities.shape[1]))
    counts = np.zeros((layout.rows, layout.cols, 1))
    for (r, c), row in zip(layout.windows, probabilities, strict=True):
        sums[r : r + 2, c : c + 2] += row
        counts[r : r + 2, c : c + 2] += 1
    cells = sums / counts
    strongest = probabilities.argmax(axis=0)  # each author's best window
    mixed = _mixed(layout, probabilities, cells, names, votes, embeddings)
    listed = list(dict.fromkeys([*(first or []), *np.argsort(-cells.max(axis=(0, 1)), kind="stable")]))
    listed = listed[:TOP_AUTHORS]
    listed += [names.index(part["author"]) for part in mixed if names.index(part["author"]) not in listed]
    return StyleMap(
        (layout.rows, layout.cols),
        {names[a]: np.round(cells[:, :, a], 4).tolist() for a in listed},
        {names[a]: list(layout.box(*layout.windows[strongest[a]])) for a in listed},
        mixed,
        cells,
    )


def _mixed(
    layout: WindowLayout,
    probabilities: np.ndarray,
    cells: np.ndarray,
    names: list[str],
    votes: np.ndarray | None,
    embeddings: np.ndarray | None,
) -> tuple:
    top = probabilities.argmax(axis=1)
    confident = probabilities[np.arange(len(top)), top] >= MIXED_CONFIDENCE
    if votes is not None:
        confident &= votes
    voted = sorted({int(a) for a in top[confident]})
    if len(voted) < 2:
        return ()
    holder = cells.argmax(axis=2)  # each cell's likeliest author
    share = {a: float((holder == a).mean()) for a in voted}
    regions = [a for a in voted if share[a] >= MIN_SHARE]
    # Each author's strongest voting window. Two styles: two of them do not overlap, and look unalike.
    # A window straddling two panels looks like neither picture and seldom votes, so it seldom decides.
    best = {
        a: int(np.argmax(np.where(confident & (top == a), probabilities[:, a], -1.0))) for a in regions
    }

    def distinct(a: int, b: int) -> bool:
        (ra, ca), (rb, cb) = layout.windows[best[a]], layout.windows[best[b]]
        unalike = embeddings is None or float(embeddings[best[a]] @ embeddings[best[b]]) <= REGION_SIMILARITY
        return (abs(ra - rb) >= 2 or abs(ca - cb) >= 2) and unalike

    apart = any(distinct(a, b) for i, a in enumerate(regions) for b in regions[i + 1 :])
    if len(regions) < 2 or not apart:
        return ()
    total = sum(share[a] for a in regions)
    parts = [
        {
            "author": names[a],
            "share": round(share[a] / total, 3),
            "box": list(layout.box(*layout.windows[best[a]])),
            "where": _where(holder == a),
        }
        for a in regions
    ]
    return tuple(sorted(parts, key=lambda part: -part["share"]))


def _where(mask: np.ndarray) -> str:
    """'left', 'top right', ... from where the cells lie; '' around the centre."""
    rows, cols = np.nonzero(mask)
    dy = (rows.mean() + 0.5) / mask.shape[0] - 0.5
    dx = (cols.mean() + 0.5) / mask.shape[1] - 0.5
    vertical = "top" if dy < -0.15 else "bottom" if dy > 0.15 else ""
    horizontal = "left" if dx < -0.15 else "right" if dx > 0.15 else ""
    return " ".join(part for part in (vertical, horizontal) if part)
