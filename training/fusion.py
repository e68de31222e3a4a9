"""Late fusion of the image's and the text's genre probabilities, its weight chosen on validation.

fused = (1 - w) * image + w * text, for genres both models know (a genre only one of them knows
keeps that one's probability). `w` is chosen from 0, 0.1, ..., 1 by validation macro mAP over
the text model's genres. Fusion is recorded as enabled only when the best fused figure beats
the better single modality by MIN_GAIN: a small validation set's noise must not switch it on.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from training.metrics import multilabel_figures

log = logging.getLogger(__name__)

WEIGHTS = tuple(i / 10 for i in range(11))
MIN_GAIN = 0.01  # validation macro mAP over the better single modality


def align(image_scores: np.ndarray, image_genres: Sequence[str], text_genres: Sequence[str]
          ) -> tuple[np.ndarray, np.ndarray]:
    """Image scores in the text model's genre order, and a mask of genres the image model knows."""
    index = {g: i for i, g in enumerate(image_genres)}
    known = np.array([g in index for g in text_genres])
    aligned = np.zeros((len(image_scores), len(text_genres)), np.float32)
    for j, genre in enumerate(text_genres):
        if genre in index:
            aligned[:, j] = image_scores[:, index[genre]]
    return aligned, known


def fused_scores(image: np.ndarray, known: np.ndarray, text: np.ndarray, text_weight: float) -> np.ndarray:
    return np.where(known[None, :], (1 - text_weight) * image + text_weight * text, text)


def choose_fusion(image: np.ndarray, known: np.ndarray, text: np.ndarray, truth: np.ndarray) -> dict:
    """The weight with the best validation macro mAP, the figures it was chosen on, and whether
    fusion is on."""
    if not known.any():
        return {"enabled": False, "reason": "the image model knows none of the text model's genres"}
    image_only = np.where(known[None, :], image, 0.0)
    figures = {w: multilabel_figures(fused_scores(image, known, text, w), truth)["macro_map"]
               for w in WEIGHTS}
    best = max(figures, key=lambda w: (figures[w], -abs(w - 0.5)))
    single = max(figures[1.0], multilabel_figures(image_only, truth)["macro_map"])
    gain = figures[best] - single
    return {"enabled": bool(gain >= MIN_GAIN and 0 < best < 1), "text_weight": best,
            "val_macro_map": {"image": round(multilabel_figures(image_only, truth)["macro_map"], 4),
                              "text": round(figures[1.0], 4), "fused": round(figures[best], 4)},
            "val_gain": round(gain, 4), "min_gain": MIN_GAIN, "items": len(truth)}


def image_genre_scores(bundle: str | os.PathLike, images: Sequence[str], batch: int = 32
                       ) -> tuple[np.ndarray, list[str]]:
    """The bundle's genre probabilities for each image file (LiteRT, as queries run), and its genres."""
    from datasets.images import load_resized
    from inference.query import StyleFinder

    finder = StyleFinder(bundle)
    genres = list(finder.bundle.genres)
    if not genres:
        return np.zeros((len(images), 0), np.float32), genres
    size = finder.bundle.image_size
    out = []
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        pixels = np.stack([load_resized(path, size, finder.max_pixels) for path in chunk])
        out.append(finder.encode(pixels)["genres"])
    return np.concatenate(out).astype(np.float32), genres


def image_model_saw_validation(bundle: str | os.PathLike) -> str | None:
    """Why the bundle's image model cannot judge a fusion weight on validation images, or None.

    A run with validation images refits its heads on training and validation together
    (train.refit_with_val), so on those images it scores as if it had seen them, and would win
    every weight it is compared at. The bundle's metrics.json says whether that happened."""
    try:
        metrics = json.loads((Path(bundle) / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if metrics.get("trained_on_validation"):
        return ("the image model's heads were refit on its validation images (train.refit_with_val), so "
                "validation cannot choose a fusion weight; train it with --set train.refit_with_val=false")
    return None


def fuse_with_bundle(bundle: str | os.PathLike, model, val: Sequence, test: Sequence, encoder, cfg
                     ) -> tuple[dict, dict | None]:
    """Choose the fusion weight on the validation rows that name an image, and measure image,
    text and fused figures on such test rows. Returns (fusion settings, test figures or None)."""
    from training.text_genres import label_matrix, text_scores

    def scored(rows):
        rows = [r for r in rows if r.image]
        if not rows:
            return None
        image, image_genres = image_genre_scores(bundle, [r.image for r in rows])
        aligned, known = align(image, image_genres, model.genres)
        return aligned, known, text_scores(model, rows, encoder, cfg), label_matrix(rows, model.genres)

    refit = image_model_saw_validation(bundle)
    on_val = None if refit else scored(val)
    if on_val is None:
        return {"enabled": False, "reason": refit or "no validation rows with an image"}, None
    fusion = choose_fusion(*on_val)
    log.info("fusion on validation: %s", fusion)
    on_test = scored(test)
    if on_test is None:
        return fusion, None
    image, known, text, truth = on_test
    weight = fusion.get("text_weight", 1.0) if fusion["enabled"] else 1.0
    figures = {"items": len(truth), "fusion_enabled": fusion["enabled"], "text_weight": weight}
    for name, scores in (("image", np.where(known[None, :], image, 0.0)), ("text", text),
                         ("fused", fused_scores(image, known, text, fusion.get("text_weight", 1.0)))):
        figures.update({f"{name}_{k}": round(v, 4) for k, v in multilabel_figures(scores, truth).items()})
    return fusion, figures
