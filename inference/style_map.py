"""Style map: where in an image each author's style is, and whether one image holds several.

The bundle's own model (LiteRT, or Keras without model.tflite) scores square windows of the image,
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
(`MIXED_CONFIDENCE`) a different author, and each such author is the likeliest author of at
least `MIN_SHARE` of the cells. Shares are of the cells those authors hold between them. Only
windows that look like a picture the model knows vote: their nearest title is about as similar as
the bundle's open-set threshold (the 5th percentile of its validation images; `WINDOW_MARGIN`
below it), and about as similar as the whole image's nearest title (`WHOLE_MARGIN` below it). A
window of a single picture is a zoomed-in detail, less like any known picture than the whole, and
such details are where confident wrong authors come from; a panel of a collage is a whole picture,
more like a known one than the collage is (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from datasets.images import load_resized

TOP_AUTHORS = 3  # maps listed per image, besides every author a confident window names
MAX_CELLS = 16  # per side: a very long strip gets longer cells rather than hundreds of windows
# A window votes for its likeliest author when the model gives it at least this probability, and
# when it looks like a picture the model knows: its nearest title at most WINDOW_MARGIN under the
# bundle's open-set threshold and at most WHOLE_MARGIN under the whole image's. Chosen together on
# collages of icons and of fonts (three draws each), where neighbouring values moved pairs and false
# alarms by 0.01-0.02; measured on a fourth draw (docs/benchmarks.md).
MIXED_CONFIDENCE = 0.25
WINDOW_MARGIN = 0.08
WHOLE_MARGIN = 0.08
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


def voting_windows(nearest: np.ndarray, threshold: float) -> np.ndarray:
    """From the nearest-title similarity of the whole image then of each window: which windows may
    vote for mixed styles (those that look like a known picture, as much as the whole does)."""
    return nearest[1:] >= max(threshold - WINDOW_MARGIN, nearest[0] - WHOLE_MARGIN)


def window_pixels(image: Image.Image, layout: WindowLayout, size: tuple[int, int]) -> np.ndarray:
    """uint8 [windows, H, W, 3]: each window resized as a whole image would be."""
    return np.stack([load_resized(image.crop(layout.box(r, c)), size) for r, c in layout.windows])


def build_style_map(
    layout: WindowLayout,
    probabilities: np.ndarray,
    names: list[str],
    first: list[int] | None = None,
    votes: np.ndarray | None = None,
) -> StyleMap:
    """The map from each window's author probabilities [windows, authors]. `first`: authors to list
    whatever the map says (the whole image's likeliest), ahead of the map's own. `votes`: which
    windows may call the image mixed (all when None)."""
    sums = np.zeros((layout.rows, layout.cols, probabilities.shape[1]))
    counts = np.zeros((layout.rows, layout.cols, 1))
    for (r, c), row in zip(layout.windows, probabilities, strict=True):
        sums[r : r + 2, c : c + 2] += row
        counts[r : r + 2, c : c + 2] += 1
    cells = sums / counts
    strongest = probabilities.argmax(axis=0)  # each author's best window
    mixed = _mixed(layout, probabilities, cells, names, votes)
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
    # Each author's strongest voting window; distinct regions: two of them do not overlap. A window
    # straddling two panels looks like neither picture and seldom votes, so it seldom decides.
    best = {
        a: layout.windows[int(np.argmax(np.where(confident & (top == a), probabilities[:, a], -1.0)))]
        for a in regions
    }
    apart = any(
        abs(best[a][0] - best[b][0]) >= 2 or abs(best[a][1] - best[b][1]) >= 2
        for i, a in enumerate(regions)
        for b in regions[i + 1 :]
    )
    if len(regions) < 2 or not apart:
        return ()
    total = sum(share[a] for a in regions)
    parts = [
        {
            "author": names[a],
            "share": round(share[a] / total, 3),
            "box": list(layout.box(*best[a])),
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
