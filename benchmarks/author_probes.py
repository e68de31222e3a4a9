"""Author top-1 of trained bundles under cheap changes: ensembles, pixel shifts, prior re-weighting,
recomputed batch-norm statistics. Prints one JSON document.

usage: python benchmarks/author_probes.py BUNDLE [BUNDLE ...] --manifest test.csv [--image-root DIR]
                                          [--train-manifest fit.csv]

The bundles must share one author list and image size (runs of `benchmarks/train_icons.py` on one
split, for instance with different seeds). Everything but the ensemble is measured on the first
bundle. With --train-manifest, its batch-norm statistics are also recomputed over those images.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.bundle import Bundle, BundleError  # noqa: E402

SHIFTS = {"up": (1, 0), "down": (-1, 0), "left": (0, 1), "right": (0, -1)}
PRIOR_EXPONENTS = (0.25, 0.5, 1.0)


def shifted(images: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Content moved by whole pixels (positive: up or left); the edge pixels fill the gap."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    height, width = images.shape[1:3]
    return padded[:, 1 + rows:1 + rows + height, 1 + cols:1 + cols + width]


def accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float:
    return round(float((probabilities.argmax(axis=1) == truth).mean()), 4)


def batch_norm_layers(layer) -> list:
    import keras

    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for child in getattr(layer, "layers", []):
        found += batch_norm_layers(child)
    return found


def recompute_batch_norm(model, images: np.ndarray, batch_size: int = 256, seed: int = 0) -> None:
    """Population statistics as the plain mean of per-batch statistics (precise BN)."""
    layers = batch_norm_layers(model)
    order = np.random.default_rng(seed).permutation(len(images))
    for i, start in enumerate(range(0, len(images), batch_size)):
        for layer in layers:
            layer.momentum = i / (i + 1)  # running mean over the batches so far
        model(images[order[start:start + batch_size]], training=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--manifest", required=True, type=Path)
    parser.add_argument("--image-root")
    parser.add_argument("--train-manifest", type=Path)
    args = parser.parse_args()
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()  # its start-up notices would bury the one error line
    try:
        print(json.dumps(probe(args), indent=2))
    except (BundleError, ValueError, OSError) as err:
        sys.exit(f"error: {err}")


def probe(args: argparse.Namespace) -> dict:
    from models.saving import load_model
    from training.data import rows_from_manifest
    from training.evaluate import load_rows

    bundles = [Bundle.load(path) for path in args.bundles]
    first = bundles[0]
    if any(b.authors != first.authors or tuple(b.image_size) != tuple(first.image_size) for b in bundles):
        raise ValueError("the bundles differ in their authors or image size")
    size = tuple(first.image_size)
    rows = rows_from_manifest(args.manifest, args.image_root)
    images, kept, _ = load_rows(rows, size)
    index = {a: i for i, a in enumerate(first.authors)}
    unknown = sorted({rows[i].author for i in kept} - set(index))
    if unknown:
        raise ValueError(f"{args.manifest}: author {unknown[0]!r} is not one of the bundle's authors")
    truth = np.array([index[rows[i].author] for i in kept])

    predictions = [load_model(b.keras_path).predict(images, verbose=0)["author"] for b in bundles]
    result: dict = {"images": len(kept), "bundles": {str(p): accuracy(q, truth)
                                                    for p, q in zip(args.bundles, predictions, strict=True)}}
    if len(bundles) > 1:
        result["ensemble"] = {
            str(k): round(float(np.mean([accuracy(sum(predictions[i] for i in combo), truth)
                                         for combo in itertools.combinations(range(len(bundles)), k)])), 4)
            for k in range(2, len(bundles) + 1)}
    model = load_model(first.keras_path)
    base = predictions[0]
    shifts = {name: model.predict(shifted(images, *move), verbose=0)["author"]
              for name, move in SHIFTS.items()}
    result["shifted_one_pixel"] = {name: accuracy(p, truth) for name, p in shifts.items()}
    result["average_over_shifts"] = accuracy(base + sum(shifts.values()), truth)
    log_prior = np.log(np.asarray(first.author_prior, np.float64) + 1e-12)
    result["prior_reweighted"] = {str(e): accuracy(np.log(base + 1e-12) + e * log_prior, truth)
                                  for e in PRIOR_EXPONENTS}
    if args.train_manifest:
        train_images, _, _ = load_rows(rows_from_manifest(args.train_manifest, args.image_root), size)
        recompute_batch_norm(model, train_images)
        result["recomputed_batch_norm"] = accuracy(model.predict(images, verbose=0)["author"], truth)
    return {"benchmark": "author_probes", "date": time.strftime("%Y-%m-%d"),
            "manifest": str(args.manifest), "author_top1": result}


if __name__ == "__main__":
    main()
