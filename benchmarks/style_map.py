"""Style maps on collages of test images: pointing, tile naming, mixed styles, false alarms; print JSON.

usage: python benchmarks/style_map.py DATA_DIR --bundle BUNDLE [--count 200] [--seed 0]

DATA_DIR is the output of `../shared/data/icon_themes.py` or `../shared/data/font_styles.py`, split by
`../shared/data/split_by_name.py` (test content unseen in training, its authors seen); BUNDLE is a bundle
trained on DATA_DIR/train.csv (the demo bundle is, for the icons). From the test images it builds
`--count` of each: single images; 1x2 pairs of two authors side by side; 2x2 collages of four
authors. Every tile keeps the size the image has alone. Measured, through `StyleFinder.style_map` as
`inference.similar --explain` runs it:
- pointing: the argmax cell of each true author's map lies in that author's tile (2x2);
- tile naming: the likeliest author of each tile's cells is its author (2x2 and pairs), beside the
  single-image author top-1 of the same bundle on the same images;
- mixed: pairs and 2x2 collages called mixed (and with their true authors), single images called
  mixed (false alarms);
- seconds per image, warm: the whole answer with its map and the overlay PNG written.
Baselines in the same run: a uniform map, and the whole image's answer copied into every cell.
Neither ever calls an image mixed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402


def collage(images: list[Image.Image], columns: int) -> tuple[Image.Image, list[tuple[int, int, int, int]]]:
    """Images in a grid of `columns`, each cell the largest image's size; and each tile's box."""
    width, height = max(i.width for i in images), max(i.height for i in images)
    rows = -(-len(images) // columns)
    canvas = Image.new("RGB", (columns * width, rows * height), "white")
    boxes = []
    for k, image in enumerate(images):
        x, y = (k % columns) * width, (k // columns) * height
        canvas.paste(image, (x, y))
        boxes.append((x, y, x + image.width, y + image.height))
    return canvas, boxes


def cell_centres(grid: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = grid
    return (np.arange(rows) + 0.5) * size[1] / rows, (np.arange(cols) + 0.5) * size[0] / cols


def tile_scores(cells: np.ndarray, grid, size, box) -> tuple[bool, np.ndarray]:
    """Which cells lie in `box` (by their centres), and the mean of their author probabilities."""
    ys, xs = cell_centres(grid, size)
    rows = (ys >= box[1]) & (ys < box[3])
    cols = (xs >= box[0]) & (xs < box[2])
    inside = rows[:, None] & cols[None, :]
    return inside, cells[inside].mean(axis=0)


def points_into(cells: np.ndarray, author: int, inside: np.ndarray) -> bool:
    r, c = np.unravel_index(cells[:, :, author].argmax(), cells.shape[:2])
    return bool(inside[r, c])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--count", type=int, default=200, help="images of each kind (default 200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from datasets.images import load_image
    from inference.query import StyleFinder
    from inference.style_overlay import write_overlay

    finder = StyleFinder(args.bundle)
    names = finder.bundle.all_authors
    with open(args.data / "test.csv", newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["author"] in names]
    by_author: dict[str, list[dict]] = {}
    for row in rows:
        by_author.setdefault(row["author"], []).append(row)
    authors = sorted(by_author)
    rng = random.Random(args.seed)

    def picture(row: dict) -> Image.Image:
        return load_image(args.data / row["image"])

    cases = [("single", [row]) for row in rng.sample(rows, min(args.count, len(rows)))]
    for kind, n in (("pair", 2), ("quad", 4)):
        for _ in range(args.count):
            cases.append((kind, [rng.choice(by_author[a]) for a in rng.sample(authors, n)]))

    counts = {k: 0 for k in ("single", "pair", "quad")}
    mixed = {k: 0 for k in counts}
    mixed_right = {"pair": 0, "quad": 0}
    pointing = {"map": [], "uniform": [], "whole": []}
    naming = {"pair": {"map": [], "whole": []}, "quad": {"map": [], "whole": []}}
    single_top1, seconds = [], []
    with tempfile.TemporaryDirectory() as folder:
        for n, (kind, members) in enumerate(cases):
            tiles = [picture(row) for row in members]
            image, boxes = (tiles[0], [(0, 0, *tiles[0].size)]) if kind == "single" else collage(tiles, 2)
            truth = [names.index(row["author"]) for row in members]
            started = time.perf_counter()  # what query(..., explain=True) runs, keeping every author's cells
            result = finder.query([image], 10)[0]
            found = finder.style_map(image, [names.index(a.name) for a in result.authors])
            write_overlay(Path(folder) / f"{n}.png", image, found.to_dict(), list(found.mixed))
            seconds.append(time.perf_counter() - started)
            whole = names.index(result.authors[0].name)
            counts[kind] += 1
            mixed[kind] += bool(found.mixed)
            if kind == "single":
                single_top1.append(whole == truth[0])
                continue
            called = {names.index(part["author"]) for part in found.mixed}
            mixed_right[kind] += called == set(truth) if kind == "pair" else len(called & set(truth)) >= 2
            uniform = np.full(found.cells.shape, 1.0 / len(names))
            for author, box in zip(truth, boxes, strict=True):
                inside, tile = tile_scores(found.cells, found.grid, image.size, box)
                naming[kind]["map"].append(int(tile.argmax()) == author)
                naming[kind]["whole"].append(whole == author)
                if kind == "quad":
                    pointing["map"].append(points_into(found.cells, author, inside))
                    pointing["uniform"].append(points_into(uniform, author, inside))
                    # the whole answer in every cell: a flat map, as uniform, whatever the answer
                    pointing["whole"].append(points_into(uniform, author, inside))
            print(f"{n + 1}/{len(cases)}", file=sys.stderr, end="\r")

    def share(values) -> float:
        return round(float(np.mean(values)), 4) if len(values) else 0.0

    top1 = share(single_top1)
    out = {
        "data": str(args.data),
        "bundle": str(args.bundle),
        "authors": len(names),
        "count_per_kind": args.count,
        "pointing_2x2": share(pointing["map"]),
        "pointing_2x2_uniform_baseline": share(pointing["uniform"]),
        "pointing_2x2_whole_image_baseline": share(pointing["whole"]),
        "tile_naming_2x2": share(naming["quad"]["map"]),
        "tile_naming_2x2_whole_image_baseline": share(naming["quad"]["whole"]),
        "tile_naming_pairs": share(naming["pair"]["map"]),
        "tile_naming_pairs_whole_image_baseline": share(naming["pair"]["whole"]),
        "single_image_author_top1": top1,
        "tile_naming_2x2_vs_single_top1": round(share(naming["quad"]["map"]) / max(top1, 1e-9), 3),
        "mixed_detected_pairs": round(mixed["pair"] / max(counts["pair"], 1), 4),
        "mixed_right_authors_pairs": round(mixed_right["pair"] / max(counts["pair"], 1), 4),
        "mixed_detected_2x2": round(mixed["quad"] / max(counts["quad"], 1), 4),
        "mixed_two_right_authors_2x2": round(mixed_right["quad"] / max(counts["quad"], 1), 4),
        "single_called_mixed": round(mixed["single"] / max(counts["single"], 1), 4),
        "explain_seconds_per_image_median": round(float(np.median(seconds)), 3),
        "explain_seconds_per_image_p90": round(float(np.percentile(seconds, 90)), 3),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
