"""Export a trained model as a bundle: Keras and LiteRT models, labels, title index, card, metrics."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import keras
import numpy as np

from datasets.decoded_cache import decode_all
from datasets.images import load_image
from datasets.tf_runtime import quiet_stderr
from inference.bundle import TFLITE_MODEL, Bundle, TitleEntry
from inference.litert_model import LiteRTModel
from training.config import RunConfig
from training.data import TrainingData
from training.evaluate import evaluate_outputs, load_rows, predict_rows, report_lines
from training.metrics import tune_thresholds

log = logging.getLogger(__name__)

THUMBNAILS_PER_TITLE = 4
THUMBNAIL_SIDE = 128
SERVING_OUTPUTS = ("author", "genres", "embedding")
MIN_TFLITE_COSINE = 0.999


def export_bundle(model, data: TrainingData, config: RunConfig, size: tuple[int, int], cache_dir: Path,
                  run_dir: Path) -> Path:
    """Write run_dir/bundle (replacing an older one only once the new one is complete)."""
    out, tmp = run_dir / "bundle", run_dir / "bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "thumbs").mkdir(parents=True)
    vocabulary = data.vocabulary
    titles, title_embeddings = _title_index(model, data, size, cache_dir, tmp)
    authors = Counter(r.author for r in data.train_rows)
    val_outputs, val_kept = ({}, [])
    if data.val_rows:
        val_outputs, val_kept, _ = predict_rows(model, data.val_rows, size)
    val_rows = [data.val_rows[i] for i in val_kept]
    thresholds = [0.5] * len(vocabulary.genres)
    if vocabulary.genres and val_rows:
        truth = vocabulary.targets(val_rows)["genres"]
        thresholds = tune_thresholds(val_outputs["genres"], truth).tolist()
    bundle = Bundle(
        path=tmp, name=config.name, version="1", image_size=tuple(size), label_kind=data.label,
        authors=list(vocabulary.authors), genres=list(vocabulary.genres), genre_thresholds=thresholds,
        author_prior=[authors[a] / len(data.train_rows) for a in vocabulary.authors],
        titles=titles, title_embeddings=title_embeddings,
        open_set=_open_set_thresholds(val_outputs, title_embeddings) if val_rows else {})
    bundle.save()
    serving = serving_model(model)
    serving.save(tmp / "model.keras")  # uncompiled: no optimizer state, no title head
    check_rows = list(data.val_rows[:8]) or list(data.train_rows[:8])
    cosine = write_tflite(serving, tmp / TFLITE_MODEL, size, check_rows)
    metrics = {"validation": evaluate_outputs(bundle, val_outputs, val_rows, tmp) if val_rows else {},
               "tflite_min_cosine": cosine}
    if "confusion_matrix" in metrics["validation"]:
        metrics["validation"]["confusion_matrix"] = "confusion.png"  # inside the bundle, not bundle.tmp
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (tmp / "config.yaml").write_text(config.to_yaml())
    (tmp / "MODEL_CARD.md").write_text(model_card(bundle, config, data, metrics))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    log.info("bundle written to %s", out)
    for line in report_lines(metrics["validation"]):
        log.info("validation %s", line)
    return out


def serving_model(model) -> keras.Model:
    """The outputs inference uses (author, genres, embedding): the title head only trains the embedding."""
    return keras.Model(model.input, {n: model.output[n] for n in SERVING_OUTPUTS if n in model.output})


def write_tflite(serving: keras.Model, path: Path, size: tuple[int, int], check_rows) -> float:
    """Convert `serving` (see serving_model) to LiteRT and check that embeddings agree with Keras."""
    # Keras's own LiteRT export: TFLiteConverter.from_concrete_functions on this TF/Keras pair
    # left the weights as uninitialised resource variables (garbage outputs).
    with quiet_stderr():
        serving.export(str(path), format="litert", verbose=False)
    images, _, _ = load_rows(check_rows, size)
    lite = LiteRTModel(path)(images)
    keras_embeddings = serving.predict(images, verbose=0)["embedding"]
    cosine = float(np.min(np.sum(lite["embedding"] * keras_embeddings, axis=1)))
    if cosine < MIN_TFLITE_COSINE:
        raise RuntimeError(f"{path}: LiteRT and Keras embeddings disagree (cosine {cosine:.5f})")
    return cosine


def _title_index(model, data: TrainingData, size, cache_dir: Path, bundle_dir: Path
                 ) -> tuple[list[TitleEntry], np.ndarray]:
    rows = data.train_rows
    decoded = decode_all([r.path for r in rows], size, cache_dir, progress=False)
    keep = np.flatnonzero(decoded.usable)
    embeddings = np.zeros((len(rows), model.output["embedding"].shape[-1]), np.float32)
    for start in range(0, len(keep), 512):
        chunk = keep[start:start + 512]
        images = np.asarray(decoded.pixels[chunk], np.float32) / 255.0
        embeddings[chunk] = model.predict(images, verbose=0)["embedding"]
    entries, means = [], []
    for t, title in enumerate(data.vocabulary.titles):
        members = [i for i in keep if rows[i].title == title]
        if not members:
            continue
        mean = embeddings[members].mean(axis=0)
        means.append(mean / max(np.linalg.norm(mean), 1e-12))
        genre_counts = Counter(g for i in members for g in rows[i].genres)
        genres = tuple(sorted(g for g, n in genre_counts.items() if n * 2 >= len(members)))
        thumbs = []
        for k, i in enumerate(sorted(members, key=lambda i: (rows[i].position or 0, str(rows[i].path)))
                              [:THUMBNAILS_PER_TITLE]):
            image = load_image(rows[i].path)
            image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
            name = f"thumbs/{t:04d}-{k}.png"
            image.save(bundle_dir / name)
            thumbs.append(name)
        entries.append(TitleEntry(title, rows[members[0]].author, genres, tuple(thumbs), len(members)))
    return entries, np.stack(means).astype(np.float32)


def _open_set_thresholds(outputs: dict[str, np.ndarray], title_embeddings: np.ndarray) -> dict[str, float]:
    """The 5th percentile of validation images' best author probability and nearest-title
    similarity: below both, an image is more likely by an author the model does not know."""
    found = {}
    if "author" in outputs:
        found["author_probability"] = float(np.percentile(outputs["author"].max(axis=1), 5))
    nearest = (outputs["embedding"] @ title_embeddings.T).max(axis=1)
    found["title_similarity"] = float(np.percentile(nearest, 5))
    return found


def model_card(bundle: Bundle, config: RunConfig, data: TrainingData, metrics: dict) -> str:
    source = config.data.manifest or f"{config.data.catalog} (splits {config.data.train_split}/" \
                                      f"{config.data.val_split})"
    lines = [
        f"# Model card: {bundle.name}",
        "",
        "## Intended use",
        "Recognising the drawing style of an image: its most likely author, its genres, and the titles "
        "whose style is closest. Not for identifying people, and not a judge of authorship disputes: "
        "it only knows the authors and titles it was trained on.",
        "",
        "## Model",
        f"- backbone `{config.model.backbone}`, pooling `{config.model.pooling}`, input "
        f"{bundle.image_size[0]}x{bundle.image_size[1]}, embedding {config.model.embedding_dim} dims",
        f"- heads: {', '.join(k for k, n in (('author', bundle.authors), ('genres', bundle.genres)) if n)}, "
        "embedding",
        "",
        "## Data",
        f"- source: {source}",
        f"- training images: {len(data.train_rows)}; validation images: {len(data.val_rows)}",
        f"- authors: {len(bundle.authors)}; genres: {len(bundle.genres)}; titles: {len(bundle.titles)}",
        f"- balancing: {config.balance.strategy}, {config.balance.per_label} samples per "
        f"{data.label} per epoch",
        "",
        "## Validation metrics (beside the label prior)",
        *(f"- {line.strip()}" for line in report_lines(metrics.get("validation", {}))),
        "",
        f"LiteRT and Keras embeddings agree to a cosine of at least {metrics['tflite_min_cosine']:.5f}.",
    ]
    return "\n".join(lines) + "\n"
