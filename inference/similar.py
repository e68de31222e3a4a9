"""Who drew it, what is it, and which titles look like it.

    python -m inference.similar IMAGE [IMAGE ...] [--bundle DIR] [--top-k 10]
                                [--mode embedding|author] [--json] [--store DIR]
                                [--synopsis TEXT|@FILE] [--explain DIR]

With no --bundle it answers from the demo model shipped in the package. With --store, the
model's outputs are read from that feature store where it has them and stored where it does
not, so querying the same images again (or a catalog enrolled before) runs no network.
With --synopsis (the title's text, or @FILE), the bundle's text genre model adds the text's
genres beside the image's, and the fused genres where the bundle records a fusion weight.
With --explain DIR, each image's style map (where each author's style is) is written there as an
overlay PNG, said in one line (one style, or the mixed styles and where), and given in --json as
`style_map` and `mixed`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from datasets.features.store import StoreError
from datasets.images import ImageError, load_image
from datasets.texts import TextError
from inference.bundle import BundleError
from inference.query import DEMO_BUNDLE, MODES, RANKINGS, StyleFinder
from inference.results import SimilarityResult
from inference.style_map import mixed_summary
from inference.text_genres import synopsis_argument
from models.text_genre_model import TextModelError

BATCH = 32
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference.similar", description=__doc__.split("\n")[0])
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE), help="model bundle folder (default: the demo)")
    parser.add_argument("--top-k", type=int, default=10, help="titles to list (default 10)")
    parser.add_argument("--mode", choices=MODES, default="embedding",
                        help="rank titles by style embedding (default) or by the likeliest authors")
    parser.add_argument("--backend", choices=("auto", "litert", "keras"), default="auto")
    parser.add_argument("--index", choices=("auto", "exact", "approximate"), default="auto",
                        help="title search: exact numpy, or a usearch HNSW graph built once and saved in the "
                             "bundle (auto: the saved graph if there is one, else exact)")
    parser.add_argument("--rank", choices=RANKINGS, default=RANKINGS[0],
                        help="embedding mode: titles by their nearest exemplars (default) or by their means")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument("--store", help="feature store folder: outputs of images run before are reused")
    parser.add_argument("--synopsis", metavar="TEXT|@FILE",
                        help="the title's synopsis (or a UTF-8 file): its genres beside the image's")
    parser.add_argument("--explain", metavar="DIR",
                        help="write each image's style map overlay here; --json adds style_map and mixed")
    return parser


def format_result(result: SimilarityResult) -> list[str]:
    lines = [result.image]
    if result.authors:
        guesses = ", ".join(f"{a.name} {a.probability:.2f}" for a in result.authors)
        lines.append(f"  authors: {guesses}")
    if result.genres:
        lines.append("  genres: " + ", ".join(f"{g.name} {g.probability:.2f}" for g in result.genres))
    if result.unknown_author:
        evidence = result.open_set
        lines.append("  unknown author: the best author probability and the nearest title's similarity "
                     "are both below the thresholds calibrated on validation "
                     f"({_pair(evidence, 'author_probability')}; {_pair(evidence, 'title_similarity')})")
    if result.synopsis is not None:
        lines.extend(synopsis_lines(result.synopsis))
    if result.mixed is not None:
        lines.append("  " + (mixed_summary(result.mixed) or "one style"))
    lines.append(f"  similar titles ({result.mode}):")
    for title in result.titles:
        lines.append(f"  {title.rank:3d}. {title.score:6.3f}  {title.title}  by {title.author or '?'}  "
                     f"{title.thumbnail or ''}")
    return lines


def synopsis_lines(synopsis: dict) -> list[str]:
    lines = []
    for key, label in (("text_genres", "text genres"), ("fused_genres", "fused genres")):
        genres = synopsis.get(key)
        if genres:
            lines.append(f"  {label}: " + ", ".join(f"{g['name']} {g['probability']:.2f}" for g in genres))
        elif key == "text_genres" and not synopsis.get("note"):
            lines.append("  text genres: none passed its threshold")
    if synopsis.get("note"):
        lines.append(f"  note: {synopsis['note']}")
    return lines


def _pair(evidence: dict[str, float], key: str) -> str:
    if key not in evidence:
        return f"no {key.replace('_', ' ')}"
    threshold = evidence.get(f"{key}_threshold")
    return f"{key.replace('_', ' ')} {evidence[key]:.2f} < {threshold:.2f}" if threshold is not None else \
        f"{key.replace('_', ' ')} {evidence[key]:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not 1 <= args.top_k <= 1000:
        print(f"error: --top-k must be between 1 and 1000, got {args.top_k}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.explain and args.store:
        print("error: --explain maps the images themselves: leave out --store", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        finder = StyleFinder(args.bundle, backend=args.backend, index=args.index, ranking=args.rank)
        if args.explain:
            explain_folder(finder, args.explain)
    except (BundleError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.synopsis is not None:
            args.synopsis = synopsis_argument(args.synopsis)
            finder.text_finder  # noqa: B018  (a bundle without a text model fails here, before any image)
        results, errors = (_from_store(finder, args) if args.store else _from_images(finder, args))
    except (BundleError, StoreError, TextError, TextModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(finder.document(results, errors), indent=2, ensure_ascii=False))
    else:
        for result in results:
            print("\n".join(format_result(result)))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    return EXIT_BAD_INPUT if errors else 0


def _from_store(finder: StyleFinder, args: argparse.Namespace) -> tuple[list[SimilarityResult], list[str]]:
    from inference.stored_outputs import StoredOutputs

    stored = StoredOutputs(finder, args.store, progress=sys.stderr.isatty())
    results, errors = [], []
    try:
        for start, outputs, problems in stored.chunks(args.images):
            good = [i for i, problem in enumerate(problems) if problem is None]
            errors.extend(problem for problem in problems if problem is not None)
            results.extend(finder.answer({name: value[good] for name, value in outputs.items()},
                                         [args.images[start + i] for i in good], args.top_k, args.mode,
                                         args.synopsis))
    finally:
        stored.close()
    return results, errors


def explain_folder(finder: StyleFinder, folder: str) -> Path:
    """The --explain folder, made; BundleError (one line) when the bundle cannot map or it cannot be made."""
    if not finder.bundle.authors:
        raise BundleError(f"{finder.bundle.path}: this bundle has no author head: --explain maps authors")
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BundleError(f"{path}: cannot write style maps there ({err.strerror or err})") from None
    return path


def _overlay_name(image: str, used: set[str]) -> str:
    stem, n = Path(image).stem or "image", 1
    name = f"{stem}.style.png"
    while name in used:
        n += 1
        name = f"{stem}-{n}.style.png"
    used.add(name)
    return name


def _from_images(finder: StyleFinder, args: argparse.Namespace) -> tuple[list[SimilarityResult], list[str]]:
    from inference.style_overlay import write_overlay

    results, errors = [], []
    used: set[str] = set()
    for start in range(0, len(args.images), BATCH):
        # Each file is decoded once; a bad one costs only itself, the rest go through as one batch.
        pictures, names = [], []
        for image in args.images[start:start + BATCH]:
            try:
                pictures.append(load_image(image, finder.max_pixels))
                names.append(image)
            except ImageError as err:
                errors.append(str(err))
        if not pictures:
            continue
        found = finder.query(pictures, args.top_k, args.mode, names=names, synopsis=args.synopsis,
                             explain=bool(args.explain))
        for picture, result in zip(pictures, found, strict=True):
            if args.explain:
                target = Path(args.explain) / _overlay_name(result.image, used)
                write_overlay(target, picture, result.style_map, result.mixed)
                result = replace(result, style_map={**result.style_map, "overlay": str(target)})
            results.append(result)
    return results, errors


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
