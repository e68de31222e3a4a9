"""Top-k similarity reports: one self-contained HTML page and a PNG contact sheet per query.

    python -m inference.report IMAGES_OR_DIR [...] --out DIR [--bundle DIR] [--top-k 10]
                               [--mode embedding|author] [--store DIR] [--synopsis TEXT|@FILE]
                               [--no-style-map]

    DIR/index.html      the page; every picture it shows is copied beside it
    DIR/queries/        the query images (PNG, at most 256 px)
    DIR/thumbs/         the bundle thumbnails of the titles shown
    DIR/sheets/         one contact sheet per query, for slides
    DIR/maps/           one style map overlay per query (bundles with an author head)

When the bundle holds a text genre model, a query image's synopsis is the `synopsis.txt` in
its folder (the folder-import convention), or --synopsis for every image; the page shows the
text's genres (and the fused ones) beside the image's. Beside each query is its style map
(inference/style_map.py: where each author's style is, and whether it holds several), which
costs about ten model runs per image: --no-style-map leaves it out.

The report is written into a temporary folder and moved into place at the end,
so an interrupted run never leaves a half-written report.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from html import escape
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from datasets.features.store import StoreError
from datasets.images import ImageError, file_problem, is_image_name, load_image
from datasets.texts import SYNOPSIS_FILE, TextError, read_text_file
from inference.bundle import BundleError
from inference.contact_sheet import draw_contact_sheet
from inference.query import DEMO_BUNDLE, MODES, StyleFinder
from inference.results import SimilarityResult
from inference.style_map import mixed_summary
from inference.style_overlay import write_overlay
from inference.text_genres import synopsis_argument
from models.text_genre_model import TextModelError

QUERY_SIDE = 256
EXIT_BAD_INPUT = 2

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fafafa}
h1{font-size:1.4em} .query{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin:1em 0}
.head{display:flex;gap:1.5em;align-items:flex-start}
.head img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated}
.bars{flex:1;max-width:480px} .bar{display:flex;align-items:center;gap:.5em;margin:.2em 0;font-size:.9em}
.bar .name{width:9em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar .track{flex:1;background:#eee;height:.9em;position:relative}
.bar .fill{background:#4c72b0;height:100%} .bar .prior{position:absolute;top:-2px;bottom:-2px;width:2px;
background:#dd8452} .genres span{background:#e7eef7;border-radius:3px;padding:0 .4em;margin-right:.3em}
.unknown{color:#a33;font-weight:bold} .titles{display:flex;flex-wrap:wrap;gap:.8em;margin-top:1em}
.title{width:120px;text-align:center;font-size:.8em} .title img{width:96px;height:96px;object-fit:contain;
background:#fff;border:1px solid #ddd} .score{color:#666} .errors{color:#a33}
.map{margin:0;font-size:.8em;max-width:220px} .map img{max-width:220px;max-height:260px}
"""


def collect_images(sources: Sequence[str]) -> list[Path]:
    """Files as given; folders walked for image files, in sorted order."""
    images: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            images.extend(sorted(p for p in source.rglob("*") if p.is_file() and is_image_name(p)))
        else:
            images.append(source)
    return images


def synopsis_for(finder: StyleFinder, image: Path, fixed: str | None) -> str | None:
    """The text to answer `image` with: `fixed`, else its folder's synopsis.txt when the bundle
    has a text model (None: no text part). TextError names a synopsis file that cannot be used."""
    if fixed is not None:
        return fixed
    if not finder.has_text_model or not (image.parent / SYNOPSIS_FILE).is_file():
        return None
    return read_text_file(image.parent / SYNOPSIS_FILE) or ""


def _answers(finder: StyleFinder, images: Sequence[Path], k: int, mode: str, store: str | None,
             synopsis: str | None = None
             ) -> Iterator[tuple[Path, Image.Image | None, SimilarityResult | str]]:
    """Each image, its picture and its result, or None and why it could not be read. With a
    feature store the model's outputs come from there (a chunk at a time); the picture is still
    read for the page."""
    if store is None:
        for path in images:
            try:
                picture = load_image(path, finder.max_pixels)
                text = synopsis_for(finder, path, synopsis)
            except (ImageError, TextError) as err:
                yield path, None, str(err)
                continue
            yield path, picture, finder.query([picture], k, mode, names=[str(path)], synopsis=text)[0]
        return
    from inference.stored_outputs import StoredOutputs

    stored = StoredOutputs(finder, store, progress=False)
    try:
        for start, outputs, problems in stored.chunks(images):
            for i, problem in enumerate(problems):
                path = images[start + i]
                if problem is None:
                    try:
                        picture = load_image(path, finder.max_pixels)
                        text = synopsis_for(finder, path, synopsis)
                    except (ImageError, TextError) as err:  # changed since it was stored
                        yield path, None, str(err)
                        continue
                    row = {name: value[i:i + 1] for name, value in outputs.items()}
                    yield path, picture, finder.answer(row, [str(path)], k, mode, text)[0]
                else:
                    yield path, None, problem
    finally:
        stored.close()


def write_report(finder: StyleFinder, images: Sequence[Path], out: Path, k: int = 10,
                 mode: str = "embedding", progress: bool = True, store: str | None = None,
                 synopsis: str | None = None, style_maps: bool = True) -> tuple[Path, list[str]]:
    """Write the report folder; returns index.html and one line per image that could not be read.
    `store`: a feature store folder the model's outputs are read from and kept in. `style_maps`:
    an overlay beside each query, where the bundle has an author head.

    The new report is built beside the old one and swapped in with renames, so that at every
    moment one complete report exists: in `out`, or, for an instant, in `out.old` (a run killed
    then leaves it there, and the next run puts it back before it starts)."""
    finish_interrupted_swap(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    style_maps = style_maps and bool(finder.bundle.authors)
    for sub in ("queries", "thumbs", "sheets", "maps"):
        (tmp / sub).mkdir(parents=True)
    sections, errors, copied = [], [], {}
    try:
        answers = tqdm(_answers(finder, images, k, mode, store, synopsis), total=len(images), desc="report",
                       unit="img", disable=not progress)
        for n, (_, picture, result) in enumerate(answers):
            if picture is None:
                errors.append(result)
                continue
            query_name = f"queries/{n:05d}.png"
            small = picture.copy()
            small.thumbnail((QUERY_SIDE, QUERY_SIDE))
            small.save(tmp / query_name)
            thumbs = [_copy_thumbnail(title.thumbnail, tmp, copied) for title in result.titles]
            sheet = draw_contact_sheet(result, small, tmp / "sheets" / f"{n:05d}.png")
            overlay = None
            if style_maps:
                result = finder.explain(result, picture)
                overlay = f"maps/{n:05d}.png"
                write_overlay(tmp / overlay, picture, result.style_map, result.mixed)
            sections.append(_section(result, query_name, thumbs, sheet.relative_to(tmp).as_posix(), overlay))
        title = f"Stylefinder: top-{k} similar titles ({finder.bundle.name})"
        (tmp / "index.html").write_text(_page(title, finder, sections, errors), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(out.name + ".old")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out / "index.html", errors


def finish_interrupted_swap(out: Path) -> None:
    """Repair what a kill during the swap left: the old report back in place if the new one
    never arrived, or the old one deleted if it did."""
    old = out.with_name(out.name + ".old")
    if not old.exists():
        return
    if out.exists():
        shutil.rmtree(old)
    else:
        os.replace(old, out)


def _copy_thumbnail(source: str | None, folder: Path, copied: dict[str, str]) -> str | None:
    if not source:
        return None
    if source not in copied:
        name = f"thumbs/{len(copied):05d}{Path(source).suffix}"
        shutil.copyfile(source, folder / name)
        copied[source] = name
    return copied[source]


def _section(result: SimilarityResult, query: str, thumbs: list[str | None], sheet: str,
             overlay: str | None = None) -> str:
    bars = "".join(
        f'<div class="bar"><span class="name">{escape(a.name)}</span><span class="track">'
        f'<span class="fill" style="display:block;width:{100 * a.probability:.1f}%"></span>'
        f'<span class="prior" style="left:{100 * a.prior:.1f}%" title="prior {a.prior:.3f}"></span>'
        f'</span><span>{a.probability:.3f}</span></div>' for a in result.authors)
    genres = "".join(f"<span>{escape(g.name)} {g.probability:.2f}</span>" for g in result.genres)
    unknown = '<p class="unknown">unknown author: below the calibrated thresholds</p>' \
        if result.unknown_author else ""
    titles = "".join(
        f'<figure class="title">{_img(thumb)}<figcaption>{t.rank}. <b>{escape(t.title)}</b><br>'
        f'{escape(t.author or "?")}<br><span class="score">{t.score:.3f}</span></figcaption></figure>'
        for t, thumb in zip(result.titles, thumbs, strict=True))
    style = (f'<figure class="map"><img src="{overlay}" alt="style map"><figcaption>'
             f'{escape(mixed_summary(result.mixed) or "one style")}</figcaption></figure>') if overlay else ""
    return (f'<section class="query"><h2>{escape(result.image)}</h2><div class="head">'
            f'<img src="{query}" alt="query">{style}<div class="bars"><b>Authors</b> (orange: prior){bars}'
            f'<p class="genres">{genres or ""}</p>{unknown}{_synopsis_part(result.synopsis)}</div></div>'
            f'<div class="titles">{titles}</div><p><a href="{sheet}">contact sheet (PNG)</a></p></section>')


def _synopsis_part(synopsis: dict | None) -> str:
    """The text's genres and the fused ones, with the note, or nothing without a synopsis."""
    if synopsis is None:
        return ""
    parts = []
    for key, label in (("text_genres", "Genres from the synopsis"), ("fused_genres", "Fused genres")):
        if synopsis.get(key) is not None:
            spans = "".join(f"<span>{escape(g['name'])} {g['probability']:.2f}</span>" for g in synopsis[key])
            parts.append(f'<b>{label}</b><p class="genres {key}">{spans or "none"}</p>')
    if synopsis.get("note"):
        parts.append(f'<p class="note">{escape(synopsis["note"])}</p>')
    return "".join(parts)


def _img(source: str | None) -> str:
    return f'<img src="{escape(source)}" alt="">' if source else ""


def _page(title: str, finder: StyleFinder, sections: list[str], errors: list[str]) -> str:
    error_list = "".join(f"<li>{escape(e)}</li>" for e in errors)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>"
            f"<p>Bundle <code>{escape(str(finder.bundle.path))}</code>, {len(finder.bundle.titles)} titles, "
            f"model run with {finder.backend}.</p>{''.join(sections)}"
            + (f'<h2>Unreadable images</h2><ul class="errors">{error_list}</ul>' if errors else "")
            + "</body></html>\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inference.report", description=__doc__.split("\n")[0])
    parser.add_argument("sources", nargs="+", metavar="IMAGES_OR_DIR")
    parser.add_argument("--bundle", default=str(DEMO_BUNDLE))
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--mode", choices=MODES, default="embedding")
    parser.add_argument("--out", type=Path, required=True, help="report folder (replaced if it exists)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--store", help="feature store folder: outputs of images run before are reused")
    parser.add_argument("--synopsis", metavar="TEXT|@FILE",
                        help="one synopsis for every image (default: each image folder's synopsis.txt)")
    parser.add_argument("--no-style-map", action="store_true",
                        help="no style map overlays (each costs about ten model runs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not 1 <= args.top_k <= 100:
        print(f"error: --top-k must be between 1 and 100, got {args.top_k}", file=sys.stderr)
        return EXIT_BAD_INPUT
    missing = [s for s in args.sources if not Path(s).exists()]
    if len(missing) == len(args.sources):  # nothing to report on: the old report stays
        problem = file_problem(missing[0])
        print(f"error: {missing[0]}: {'no such file or folder' if problem == 'no such file' else problem}",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    # Otherwise a missing file is one more unreadable image, listed like the others.
    images = collect_images(args.sources)
    if not images:
        print(f"error: {', '.join(args.sources)}: no image files found", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        finder = StyleFinder(args.bundle)
        synopsis = None
        if args.synopsis is not None:
            synopsis = synopsis_argument(args.synopsis)
            finder.text_finder  # noqa: B018  (a bundle without a text model fails here, before any image)
        page, errors = write_report(finder, images, args.out, args.top_k, args.mode, not args.quiet,
                                    args.store, synopsis, not args.no_style_map)
    except (BundleError, ImportError, StoreError, TextError, TextModelError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    print(f"report: {page} ({len(images) - len(errors)} images)")
    return EXIT_BAD_INPUT if errors else 0


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
