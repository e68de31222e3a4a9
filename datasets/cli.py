"""`python -m datasets {import,stats,split,export}`: a thin layer over the data-layer functions."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from datasets.catalog import SPLITS, WRITER_WAIT_SECONDS, Catalog, CatalogError
from datasets.config import (
    DEFAULT_CATALOG,
    LABEL_KINDS,
    STRATEGIES,
    AugmentConfig,
    BalanceConfig,
    ImportConfig,
    SplitConfig,
)
from datasets.images import ImageError
from datasets.imports import SourceError, ingest, read_source
from datasets.splits import LeakageError, list_groupings, split_catalog
from datasets.stats import compute_stats, export_split, plot_stats

EXIT_BAD_INPUT = 2
EXIT_LEAKAGE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    imports, splits = ImportConfig(), SplitConfig()

    p = commands.add_parser("import", help="add a folder tree or a CSV manifest to the catalog")
    p.add_argument("source", help="ROOT folder of <author>/<title>/<image>, or a .csv manifest")
    _catalog_arg(p)
    p.add_argument("--image-root", help="folder the manifest's image paths are relative to "
                   "(default: the manifest's folder)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="accept manifest rows that point outside the image root (refused by default)")
    p.add_argument("--wait", type=float, default=WRITER_WAIT_SECONDS,
                   help="seconds to wait for another process writing to the catalog (default: %(default)s)")
    p.add_argument("--source-name", default=imports.source, help="source recorded for the titles "
                   "(default: %(default)s)")
    p.add_argument("--batch-size", type=_positive, default=imports.batch_size,
                   help="images per transaction (default: %(default)s)")
    p.add_argument("--max-pixels", type=_positive, default=imports.max_pixels,
                   help="larger images are rejected as decompression bombs (default: %(default)s)")
    p.add_argument("--placeholder-min-titles", type=_positive, default=imports.placeholder_min_titles,
                   help="a file found in this many titles is a placeholder (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = commands.add_parser("stats", help="counts per author, title and genre, and a bar chart")
    _catalog_arg(p)
    p.add_argument("--split", choices=SPLITS, help="only this split")
    p.add_argument("--chart", help="bar chart PNG (default: next to the catalog, *.stats.png)")
    p.add_argument("--json", action="store_true", help="print one JSON document")

    p = commands.add_parser("split", help="assign train/val/test without leaking between them")
    _catalog_arg(p)
    p.add_argument("--by", choices=list_groupings(), default=splits.by,
                   help="what stays together (default: %(default)s; 'image' leaks)")
    p.add_argument("--fractions", type=_fractions, default=splits.fractions,
                   help="train,val,test shares (default: 0.8,0.1,0.1)")
    p.add_argument("--seed", type=int, default=splits.seed)
    p.add_argument("--min-images", type=_positive, default=splits.min_images,
                   help="titles with fewer usable images are left out (default: %(default)s, "
                   "the webtoon study's rule for episode thumbnails)")
    p.add_argument("--label", choices=("author", "title", "genre"), default=splits.label,
                   help="label to stratify by (default: %(default)s)")
    p.add_argument("--block-size", type=_positive, default=splits.block_size,
                   help="images per block for --by episode-block (default: %(default)s)")
    p.add_argument("--near-dup-distance", type=int, default=splits.near_duplicate_distance,
                   help="dHash bits within which two images are near-duplicate candidates "
                   "(default: %(default)s)")
    p.add_argument("--near-dup-tolerance", type=float, default=splits.near_duplicate_pixel_tolerance,
                   help="candidates whose 16x16 thumbnails differ by at most this mean level (0-255) "
                   "are near-duplicates (default: %(default)s)")
    p.add_argument("--strict", action="store_true",
                   help="fail, storing nothing, if near-duplicates cross splits")

    balance = BalanceConfig()
    p = commands.add_parser("augment", help="report, or write out, the balanced augmented stream")
    _catalog_arg(p)
    p.add_argument("--split", choices=SPLITS, default="train", help="default: %(default)s")
    p.add_argument("--label", choices=LABEL_KINDS, default=balance.label, help="default: %(default)s")
    p.add_argument("--per-label", type=_positive, default=balance.per_label,
                   help="samples per label per epoch (default: %(default)s)")
    p.add_argument("--strategy", choices=STRATEGIES, default=balance.strategy,
                   help="balanced sampling, or each image once with class weights (default: %(default)s)")
    p.add_argument("--size", type=_size, default=balance.image_size,
                   help="HEIGHTxWIDTH of the images (default: 64x64)")
    p.add_argument("--batch-size", type=_positive, default=balance.batch_size)
    p.add_argument("--seed", type=int, default=balance.seed)
    p.add_argument("--cache-dir", help="decoded-image cache (default: cache/ next to the catalog)")
    p.add_argument("--materialize", metavar="DIR", help="write the stream to TFRecord shards in DIR")
    p.add_argument("--epochs", type=_positive, default=1, help="epochs to write (default: 1)")
    p.add_argument("--shards", type=_positive, default=8, help="TFRecord files (default: 8)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    _dataclass_flags(p.add_argument_group("augmentation"), AugmentConfig())

    p = commands.add_parser("export", help="write a split as a manifest CSV")
    _catalog_arg(p)
    p.add_argument("--split", choices=SPLITS, required=True)
    p.add_argument("--out", required=True, help="CSV file to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except LeakageError as err:
        print("\n".join(err.report.lines()))
        print(f"error: {err}", file=sys.stderr)
        return EXIT_LEAKAGE
    except (SourceError, CatalogError, ImageError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _import(args: argparse.Namespace) -> int:
    records, skipped = read_source(args.source, args.image_root, args.allow_outside_root)
    config = ImportConfig(max_pixels=args.max_pixels, batch_size=args.batch_size,
                          placeholder_min_titles=args.placeholder_min_titles, source=args.source_name)
    with Catalog(args.catalog, create=True, wait=args.wait) as catalog:
        report = ingest(catalog, records, config, progress=not args.quiet)
        totals = (catalog.count("authors"), catalog.count("titles"), catalog.count("images"))
    report.rejected[:0] = skipped
    print(report.summary())
    print("catalog {}: {} authors, {} titles, {} images".format(args.catalog, *totals))
    if report.rejected:
        print(f"skipped {len(report.rejected)} entries:")
        print("\n".join(f"  {line}" for line in report.rejected))
    return 0


def _stats(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        stats = compute_stats(catalog, args.split)
    chart = Path(args.chart) if args.chart else Path(args.catalog).with_suffix(".stats.png")
    plot_stats(stats, chart)
    if args.json:
        print(json.dumps({**stats.to_dict(), "chart": str(chart)}, indent=2, ensure_ascii=False))
    else:
        print("\n".join(stats.lines()))
        print(f"\nchart: {chart}")
    return 0


def _split(args: argparse.Namespace) -> int:
    config = SplitConfig(by=args.by, fractions=args.fractions, seed=args.seed,
                         min_images=args.min_images, label=args.label, block_size=args.block_size,
                         near_duplicate_distance=args.near_dup_distance,
                         near_duplicate_pixel_tolerance=args.near_dup_tolerance, strict=args.strict)
    with Catalog(args.catalog) as catalog:
        report = split_catalog(catalog, config)
    print("\n".join(report.lines()))
    return 0


def _augment(args: argparse.Namespace) -> int:
    balance = BalanceConfig(label=args.label, per_label=args.per_label, strategy=args.strategy,
                            image_size=args.size, batch_size=args.batch_size, seed=args.seed)
    augment = AugmentConfig(**{f.name: getattr(args, f.name) for f in fields(AugmentConfig)})
    with Catalog(args.catalog) as catalog:
        rows = catalog.images(split=args.split)
    if not rows:
        raise ValueError(f"{args.catalog}: split {args.split!r} is empty (run `python -m datasets split`)")
    cache_dir = Path(args.cache_dir) if args.cache_dir else Path(args.catalog).resolve().parent / "cache"
    # TensorFlow loads only for the command that needs it.
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()
    from datasets.materialize import materialize
    from datasets.pipeline import BalancedStream
    from datasets.sampling import LabelledImages

    stream = BalancedStream(LabelledImages.from_rows(rows, args.label), balance, augment, cache_dir)
    report = {"label_kind": args.label, "strategy": args.strategy, "labels": len(stream.label_names),
              "samples_per_epoch": stream.sampler.epoch_size,
              "skipped_images": list(stream.decoded.problems),
              "achieved_counts": stream.achieved_counts(0)}
    if args.strategy == "class_weight":
        report["class_weights"] = stream.sampler.class_weights()
    if args.materialize:
        meta = materialize(stream, args.materialize, args.epochs, args.shards)
        report["materialized"] = {"folder": args.materialize, "count": meta["count"]}
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print(f"{report['labels']} {args.label} labels, {report['samples_per_epoch']} samples per epoch "
          f"({args.strategy}); achieved per label in epoch 0:")
    print("\n".join(f"  {name[:40]:40s} {count:12g}" for name, count in report["achieved_counts"].items()))
    if "materialized" in report:
        print(f"wrote {report['materialized']['count']} samples to {args.materialize}")
    return 0


def _export(args: argparse.Namespace) -> int:
    with Catalog(args.catalog) as catalog:
        count = export_split(catalog, args.split, args.out)
    print(f"wrote {count} rows of split {args.split} to {args.out}")
    return 0


_COMMANDS = {"import": _import, "stats": _stats, "split": _split, "augment": _augment,
             "export": _export}


def _catalog_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--catalog", default=DEFAULT_CATALOG,
                        help="catalog SQLite file (default: %(default)s)")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers like 0.8,0.1,0.1, got {text!r}")
    return parts  # type: ignore[return-value]


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH like 64x64, got {text!r}") from None
    return height, width


def _dataclass_flags(group: argparse._ArgumentGroup, defaults: object) -> None:
    """One --flag per field of a config dataclass, typed and defaulted from it."""
    for field in fields(defaults):
        value = getattr(defaults, field.name)
        group.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(value),
                           default=value, help="default: %(default)s")
