"""Evaluate a bundle on a manifest, every figure beside its baseline.

    python -m training.evaluate --bundle runs/demo/bundle --manifest test.csv [--image-root DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datasets.catalog import ImageRow
from datasets.images import DEFAULT_MAX_PIXELS, ImageError, load_resized
from inference.bundle import Bundle, BundleError
from training.metrics import author_metrics, genre_metrics, plot_confusion, ranking_metrics

log = logging.getLogger(__name__)


def load_rows(rows: Sequence[ImageRow], size: tuple[int, int]) -> tuple[np.ndarray, list[int], list[str]]:
    """Images (float32 0-1) of the rows that decode, their row indices, and the problems."""
    def load(row: ImageRow):
        try:
            return load_resized(row.path, size, DEFAULT_MAX_PIXELS), None
        except ImageError as err:
            return None, str(err)

    with ThreadPoolExecutor() as pool:
        loaded = list(pool.map(load, rows))
    kept = [i for i, (array, _) in enumerate(loaded) if array is not None]
    problems = [problem for _, problem in loaded if problem]
    if not kept:
        raise ValueError("none of the images could be read")
    return np.stack([loaded[i][0] for i in kept]).astype(np.float32) / 255.0, kept, problems


def predict_rows(model, rows: Sequence[ImageRow], size: tuple[int, int], batch_size: int = 64
                 ) -> tuple[dict[str, np.ndarray], list[int], list[str]]:
    """Model outputs for the rows that decode; returns (outputs, kept row indices, problems)."""
    images, kept, problems = load_rows(rows, size)
    outputs = model.predict(images, batch_size=batch_size, verbose=0)
    return {k: np.asarray(v) for k, v in outputs.items()}, kept, problems


def evaluate_outputs(bundle: Bundle, outputs: dict[str, np.ndarray], rows: Sequence[ImageRow],
                     figures_dir: Path | None = None) -> dict:
    """All metrics for predictions on `rows` (aligned with `outputs`)."""
    result: dict = {"images": len(rows)}
    if bundle.authors and "author" in outputs:
        index = {a: i for i, a in enumerate(bundle.authors)}
        known = [i for i, r in enumerate(rows) if r.author in index]
        if known:
            truth = np.array([index[rows[i].author] for i in known])
            probabilities = outputs["author"][known]
            result.update(author_metrics(probabilities, truth, np.array(bundle.author_prior)))
            if figures_dir is not None:
                result["confusion_matrix"] = str(plot_confusion(
                    truth, probabilities.argmax(axis=1), bundle.authors, figures_dir / "confusion.png"))
        result["author_unknown_images"] = len(rows) - len(known)
    if bundle.genres and "genres" in outputs:
        index = {g: i for i, g in enumerate(bundle.genres)}
        truth = np.zeros((len(rows), len(bundle.genres)), np.int64)
        for i, row in enumerate(rows):
            truth[i, [index[g] for g in row.genres if g in index]] = 1
        prior = _genre_prior(bundle)
        result.update(genre_metrics(outputs["genres"], truth, np.array(bundle.genre_thresholds), prior,
                                    bundle.genres))
    result.update(_title_metrics(bundle, _title_scores(bundle, outputs), rows))
    result.update(_title_metrics(bundle, outputs["embedding"] @ bundle.title_embeddings.T, rows, "means_"))
    return result


def _title_scores(bundle: Bundle, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """[images, titles] as the query path ranks titles by default: nearest exemplars and a tenth
    of the mean (`inference.query.exemplar_ranking`); by the means alone for a model without the
    exemplars' output."""
    from inference.query import exemplar_ranking
    from inference.search import unit_rows

    similarity = unit_rows(outputs["embedding"]) @ bundle.title_embeddings.T
    exemplars = bundle.title_exemplars
    if exemplars.output not in outputs:
        return similarity
    vectors = exemplars.project(outputs[exemplars.output])
    scores = np.concatenate([exemplars.scores(vectors[i:i + 512], len(bundle.titles))
                             for i in range(0, len(vectors), 512)] or [np.zeros((0, len(bundle.titles)))])
    return exemplar_ranking(scores, similarity)


def _genre_prior(bundle: Bundle) -> np.ndarray:
    """Each genre's share of training images, from the title index."""
    counts = np.zeros(len(bundle.genres))
    total = sum(t.images for t in bundle.titles) or 1
    index = {g: i for i, g in enumerate(bundle.genres)}
    for title in bundle.titles:
        for genre in title.genres:
            counts[index[genre]] += title.images
    return counts / total


def _title_metrics(bundle: Bundle, similarity: np.ndarray, rows: Sequence[ImageRow], prefix: str = ""
                   ) -> dict:
    """Titles ranked by `similarity` [images, titles]; unseen titles count via their author.
    `prefix` names a second ranking's figures (the priors are given once)."""
    title_index = {t.name: i for i, t in enumerate(bundle.titles)}
    by_author: dict[str | None, list[int]] = {}
    for i, title in enumerate(bundle.titles):
        by_author.setdefault(title.author, []).append(i)
    sizes = np.array([t.images for t in bundle.titles], float)
    prior_similarity = np.repeat(sizes[None, :], len(rows), axis=0)
    out: dict = {}
    seen = [i for i, r in enumerate(rows) if r.title in title_index]
    if seen:
        truth = [[title_index[rows[i].title]] for i in seen]
        out.update(ranking_metrics(similarity[seen], truth, f"{prefix}title"))
        if not prefix:
            out.update(ranking_metrics(prior_similarity[seen], truth, "prior_title"))
    unseen = [i for i, r in enumerate(rows) if r.title not in title_index and r.author in by_author]
    if unseen:
        truth = [by_author[rows[i].author] for i in unseen]
        out.update(ranking_metrics(similarity[unseen], truth, f"{prefix}author_titles"))
        if not prefix:
            out.update(ranking_metrics(prior_similarity[unseen], truth, "prior_author_titles"))
    if not prefix:
        out["title_seen_images"], out["title_unseen_images"] = len(seen), len(unseen)
    return out


def report_lines(metrics: dict) -> list[str]:
    """The figures with their baselines, one per line."""
    lines = []
    for key, value in metrics.items():
        if key.startswith("prior_") or not isinstance(value, float):
            continue
        baseline = metrics.get(f"prior_{key}")
        suffix = f"   (prior {baseline:.3f})" if isinstance(baseline, float) else ""
        lines.append(f"{key:24s} {value:.3f}{suffix}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--manifest", required=True, help="CSV with columns image,title,author,genres")
    parser.add_argument("--image-root")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept manifest rows that point outside --image-root (refused by default)")
    parser.add_argument("--out", help="folder for the confusion matrix PNG (default: the bundle)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    try:
        bundle = Bundle.load(args.bundle)
        from training.data import rows_from_manifest

        rows = rows_from_manifest(args.manifest, args.image_root, args.allow_outside_root)
        from datasets.tf_runtime import import_tensorflow

        import_tensorflow()
        from models.saving import load_model

        model = load_model(bundle.keras_path)
        outputs, kept, problems = predict_rows(model, rows, bundle.image_size)
    except (BundleError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for problem in problems:
        log.warning("skipped %s", problem)
    figures = Path(args.out) if args.out else bundle.path
    figures.mkdir(parents=True, exist_ok=True)
    metrics = evaluate_outputs(bundle, outputs, [rows[i] for i in kept], figures)
    metrics["skipped_images"] = len(problems)
    if args.json:
        print(json.dumps(metrics, indent=2))
    else:
        print(f"{len(kept)} images evaluated ({len(problems)} skipped)")
        print("\n".join(report_lines(metrics)))
    return 0


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
