"""Add titles and authors to a bundle without retraining.

    python -m inference.enroll --bundle DIR SRC          SRC: ROOT/<author>/<title>/<image> or a CSV manifest
    python -m inference.enroll --bundle DIR --catalog data/catalog.sqlite --split train
    python -m inference.enroll --bundle DIR --catalog data/catalog.sqlite --new
    python -m inference.enroll --bundle DIR --remove TITLE
    ... --store DIR                                      reuse and keep the model's outputs in a feature store

Images are encoded with the bundle's own LiteRT model (TensorFlow is never imported). A title
the bundle has is updated (its mean embedding, thumbnails, genres, image count); an author it
does not know is added and named through the nearest-title classifier. Each bad image is
one line; the bundle is replaced atomically, so a kill leaves the old bundle or the new one.

`--new` takes the catalog's images collected since the bundle's last `--new` from that catalog
(it records the highest image id it took); the first time, the images no split holds (never
trained on). A weekly collection followed by `--new` adds new titles and new episodes of the
titles the bundle has.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from datasets.images import ImageError
from inference.bundle import BundleError
from inference.enrollment import EnrollImage, enroll, remove_title

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.enroll", description=__doc__.split("\n")[0])
    parser.add_argument("source", nargs="?", help="ROOT/<author>/<title>/<image> folder or a CSV manifest")
    parser.add_argument("--bundle", required=True, help="the bundle folder to update in place")
    parser.add_argument("--image-root", help="folder a manifest's image paths are relative to")
    parser.add_argument("--catalog", help="enroll a split of this catalog instead of SRC")
    parser.add_argument("--split", help="with --catalog: the split to enroll (train, val or test)")
    parser.add_argument("--new", action="store_true",
                        help="with --catalog: the images collected since the last --new (see above)")
    parser.add_argument("--remove", metavar="TITLE", help="take this title out of the bundle")
    parser.add_argument("--store", help="feature store folder: images run through this model before are "
                        "not run again, and new ones are kept there")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def read_images(args: argparse.Namespace) -> tuple[list[EnrollImage], list[str], str, tuple[str, int] | None]:
    """The images to enroll, one-line reasons for rows skipped, the source to record, and with
    `--new` the (catalog, highest image id) mark to record with them."""
    if args.catalog:
        from datasets.catalog import Catalog

        if bool(args.split) == bool(args.new):
            raise ValueError("--catalog needs --split (train, val or test) or --new")
        with Catalog(args.catalog) as catalog:
            rows = catalog.images(split=args.split)
        mark = None
        if args.new:
            key = str(Path(args.catalog).resolve())
            last = catalog_marks(args.bundle).get(key)
            mark = (key, max((r.id for r in rows), default=last or 0))
            rows = [r for r in rows if (r.id > last if last is not None else r.split is None)]
        elif not rows:
            raise ValueError(f"{args.catalog}: split {args.split!r} is empty")
        images = [EnrollImage(r.path, r.title, r.author, r.genres, str(r.path)) for r in rows]
        return images, [], f"{args.catalog} " + ("new images" if args.new else f"split {args.split}"), mark
    from datasets.imports import read_source

    records, skipped = read_source(args.source, args.image_root)
    images = [EnrollImage(r.path, r.title, r.author, r.genres, r.origin) for r in records]
    return images, skipped, str(Path(args.source).resolve()), None


def catalog_marks(bundle_dir: str) -> dict[str, int]:
    """The bundle's record of what `--new` took from each catalog (read without loading the index)."""
    from inference.bundle import MANIFEST

    try:
        meta = json.loads((Path(bundle_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}  # enrolling then reports the bundle's problem in its own words
    marks = meta.get("catalog_marks") if isinstance(meta, dict) else None
    return marks if isinstance(marks, dict) else {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if bool(args.remove) + bool(args.source) + bool(args.catalog) != 1:
        parser.error("give one of SRC, --catalog with --split or --new, or --remove TITLE")
    if args.new and not args.catalog:
        parser.error("--new needs --catalog")
    try:
        if args.remove:
            bundle = remove_title(args.bundle, args.remove)
            print(f"removed {args.remove!r}: {len(bundle.titles)} titles left")
            return 0
        images, skipped, source, mark = read_images(args)
        if args.new and not images:
            print(f"nothing new in {args.catalog} since this bundle's last --new from it")
            return 0
        report = enroll(args.bundle, images, source, progress=not args.quiet, store=args.store,
                        catalog_mark=mark)
    except (BundleError, ImageError, ValueError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = skipped + report.rejected
    print(report.summary())
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not report.images:
        print(f"error: {args.source or args.catalog}: no image could be enrolled", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
