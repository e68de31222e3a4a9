"""One PNG per query for a slide: the query, its author probabilities, and the top titles' thumbnails."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
from PIL import Image

from inference.results import SimilarityResult

COLUMNS = 5


def draw_contact_sheet(result: SimilarityResult, query: Image.Image, out: Path) -> Path:
    """Write `out` (PNG): the query and author bars on top, the top-k titles in rows of five below."""
    # The object-oriented API, not pyplot: no global figure state, safe in threads and servers.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = max(1, -(-len(result.titles) // COLUMNS))
    figure = Figure(figsize=(COLUMNS * 2.0, 2.6 + rows * 2.3), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(rows + 1, COLUMNS, height_ratios=[1.2] + [1.0] * rows)
    ax = figure.add_subplot(grid[0, 0])
    ax.imshow(np.asarray(query))
    ax.set_title(textwrap.shorten(Path(result.image).name, 28), fontsize=8)
    ax.axis("off")
    bars = figure.add_subplot(grid[0, 1:])
    if result.authors:
        names = [a.name for a in result.authors][::-1]
        bars.barh(names, [a.probability for a in result.authors][::-1], color="#4c72b0", label="model")
        bars.scatter([a.prior for a in result.authors][::-1], names, color="#dd8452", marker="|", s=200,
                     label="prior", zorder=3)
        bars.set_xlim(0, 1)
        bars.legend(loc="lower right", fontsize=7)
        heading = "unknown author" if result.unknown_author else "author probability"
        genres = ", ".join(g.name for g in result.genres)
        bars.set_title(heading + (f"   genres: {genres}" if genres else ""), fontsize=9)
        bars.tick_params(labelsize=8)
    else:
        bars.axis("off")
    for i, title in enumerate(result.titles):
        cell = figure.add_subplot(grid[1 + i // COLUMNS, i % COLUMNS])
        if title.thumbnail and Path(title.thumbnail).is_file():
            with Image.open(title.thumbnail) as thumb:
                cell.imshow(np.asarray(thumb.convert("RGB")))
        cell.set_title(f"{title.rank}. {textwrap.shorten(title.title, 20)}\n{title.author or '?'}  "
                       f"{title.score:.3f}", fontsize=7)
        cell.axis("off")
    tmp = out.with_name(out.name + ".tmp.png")
    figure.savefig(tmp, facecolor="white")
    tmp.replace(out)
    return out
