"""Export a trained model as a bundle: Keras and LiteRT models, labels, title index, card, metrics."""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from datasets.catalog import ImageRow
from datasets.features.encoders import EncoderSpec
from datasets.images import resize_record
from datasets.tf_runtime import quiet_stderr
from inference.author_prototypes import calibrate
from inference.bundle import (
    ENCODERS,
    HEADS_MODEL,
    TFLITE_MODEL,
    THUMBNAILS_PER_TITLE,
    Bundle,
    TitleEntry,
    write_thumbnail,
)
from inference.litert_model import LiteRTModel
from inference.search import unit_rows
from inference.title_exemplars import TitleExemplars
from inference.two_stage_model import TwoStageModel
from models.run_features import RunFeatures
from training.config import RunConfig
from training.data import TrainingData
from training.evaluate import evaluate_outputs, load_rows, report_lines
from training.gram_projection import projected_gram_layers
from training.metrics import tune_thresholds
from training.model_setup import serving_outputs

log = logging.getLogger(__name__)

MIN_TFLITE_COSINE = 0.999


@dataclass(frozen=True)
class RowOutputs:
    """Rows that could be read, and the serving outputs (author, genres, embedding) for each."""

    rows: tuple[ImageRow, ...]
    outputs: dict[str, np.ndarray]

    @classmethod
    def of(cls, rows, index: np.ndarray, outputs: dict[str, np.ndarray]) -> RowOutputs:
        return cls(tuple(rows[i] for i in index), {k: v[index] for k, v in outputs.items()})


def export_bundle(model, data: TrainingData, config: RunConfig, size: tuple[int, int], run_dir: Path,
                  train: RowOutputs, val: RowOutputs, encoder: EncoderSpec | None = None) -> Path:
    """Write run_dir/bundle (replacing an older one only once the new one is complete). With
    `encoder` (the store's, whose features the heads were trained on) its LiteRT network is
    the store's encoder file and the heads apart; without, one file converted from the model."""
    out, tmp = run_dir / "bundle", run_dir / "bundle.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "thumbs").mkdir(parents=True)
    vocabulary = data.vocabulary
    titles, title_embeddings = _title_index(train, vocabulary.titles, tmp)
    exemplars = _exemplars(train, titles)
    nothing_enrolled = np.zeros(len(titles), np.float32)
    temperature, _ = calibrate(exemplars, [t.author for t in titles], nothing_enrolled)
    authors = Counter(r.author for r in data.train_rows)
    thresholds = [0.5] * len(vocabulary.genres)
    if vocabulary.genres and val.rows:
        truth = vocabulary.targets(val.rows)["genres"]
        thresholds = tune_thresholds(val.outputs["genres"], truth).tolist()
    bundle = Bundle(
        path=tmp, name=config.name, version="1", image_size=tuple(size), label_kind=data.label,
        authors=list(vocabulary.authors), genres=list(vocabulary.genres), genre_thresholds=thresholds,
        author_prior=[authors[a] / len(data.train_rows) for a in vocabulary.authors],
        titles=titles, title_embeddings=title_embeddings,
        open_set=_open_set_thresholds(val.outputs, title_embeddings) if val.rows else {},
        prototype_temperature=temperature, exemplars=exemplars, resize=resize_record(size))
    bundle.save()
    serving = serving_model(model)
    serving.save(tmp / "model.keras")  # uncompiled: no optimizer state, no title head
    check_rows = list(data.val_rows[:8]) or list(data.train_rows[:8])
    heads = heads_model(model, encoder) if encoder is not None else None
    if heads is not None:
        cosine = write_two_stage(heads, encoder, tmp, size, check_rows)
    else:
        cosine = write_tflite(serving, tmp / TFLITE_MODEL, size, check_rows)
    metrics = {"validation": evaluate_outputs(bundle, val.outputs, val.rows, tmp) if val.rows else {},
               "validation_rule": data.validation,
               # True after a refit on training + validation: validation figures are then the frozen
               # heads', and the exported heads have seen the validation images (fusion checks this).
               "trained_on_validation": bool(data.val_rows) and {r.path for r in data.val_rows}
               <= {r.path for r in data.train_rows},
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
    """The outputs inference uses (author, genres, embedding); the author mixture serves as "author"."""
    return keras.Model(model.input, serving_outputs(model.output))


def write_tflite(serving: keras.Model, path: Path, size: tuple[int, int], check_rows) -> float:
    """Convert `serving` (see serving_model) to LiteRT and check that embeddings agree with Keras."""
    # Keras's own LiteRT export: TFLiteConverter.from_concrete_functions on this TF/Keras pair
    # left the weights as uninitialised resource variables (garbage outputs).
    # Weights stay float32: float16 weights halved the file but moved font embeddings to a
    # cosine of 0.997 (Gram matrices multiply the rounding errors), below MIN_TFLITE_COSINE.
    images, _, _ = load_rows(check_rows, size)
    with quiet_stderr():  # the converter's and the interpreter's native notices
        serving.export(str(path), format="litert", verbose=False)
        lite = LiteRTModel(path)(images)
    keras_embeddings = serving.predict(images, verbose=0)["embedding"]
    cosine = float(np.min(np.sum(lite["embedding"] * keras_embeddings, axis=1)))
    if cosine < MIN_TFLITE_COSINE:
        raise RuntimeError(f"{path}: LiteRT and Keras embeddings disagree (cosine {cosine:.5f})")
    return cosine


def heads_model(model, encoder: EncoderSpec) -> keras.Model | None:
    """The encoder's raw statistics -> the serving outputs: the run's projections (RunFeatures),
    then the trained heads (weights shared with `model`). None where the encoder's layout does
    not lead to the heads' features (then the bundle is one converted model)."""
    projected = {layer.name: layer for layer in projected_gram_layers(model.backbone)}
    try:
        front = RunFeatures(encoder.layout, {name: layer.channels for name, layer in projected.items()})
    except ValueError as err:
        log.warning("one LiteRT model for the bundle: %s", err)
        return None
    width = front.compute_output_shape((None, encoder.dim))[-1]
    if width != model.backbone.output_shape[-1]:
        log.warning("one LiteRT model for the bundle: the encoder %s gives %d features, the heads take %d",
                    encoder.key, width, model.backbone.output_shape[-1])
        return None
    raw = keras.Input((encoder.dim,), name="statistics")
    features = front(raw)
    front.set_projections({name: keras.ops.convert_to_numpy(layer.projection)
                           for name, layer in projected.items()})
    return keras.Model(raw, serving_outputs(model.heads(features)))


def write_two_stage(heads: keras.Model, encoder: EncoderSpec, bundle_dir: Path, size: tuple[int, int],
                    check_rows) -> float:
    """Copy the store's encoder into the bundle and convert `heads` (see heads_model: a small
    network; the whole model's conversion was about 10 s of a run); check the heads' embeddings
    against Keras on the check images' statistics."""
    folder = bundle_dir / ENCODERS
    folder.mkdir()
    for source in (encoder.json_path, encoder.tflite_path):
        shutil.copyfile(source, folder / source.name)
    path = bundle_dir / HEADS_MODEL
    images, _, _ = load_rows(check_rows, size)
    with quiet_stderr():
        heads.export(str(path), format="litert", verbose=False)
        lite = TwoStageModel(EncoderSpec.load(bundle_dir, encoder.key), path)
        statistics = lite.statistics(images)
        got = lite.heads(statistics)["embedding"]
    want = heads.predict(statistics, verbose=0)["embedding"]
    cosine = float(np.min(np.sum(got * want, axis=1)))
    if cosine < MIN_TFLITE_COSINE:
        raise RuntimeError(f"{path}: LiteRT and Keras embeddings disagree (cosine {cosine:.5f})")
    return cosine


def _title_index(train: RowOutputs, titles: tuple[str, ...], bundle_dir: Path
                 ) -> tuple[list[TitleEntry], np.ndarray]:
    """Each title's unit-length mean embedding over its training images, and its thumbnails."""
    rows, embeddings = train.rows, train.outputs["embedding"]
    entries, means = [], []
    for t, title in enumerate(titles):
        members = [i for i, r in enumerate(rows) if r.title == title]
        if not members:
            continue
        means.append(unit_rows(embeddings[members].mean(axis=0)))
        genre_counts = Counter(g for i in members for g in rows[i].genres)
        genres = tuple(sorted(g for g, n in genre_counts.items() if n * 2 >= len(members)))
        thumbs = []
        for k, i in enumerate(sorted(members, key=lambda i: (rows[i].position or 0, str(rows[i].path)))
                              [:THUMBNAILS_PER_TITLE]):
            name = f"thumbs/{t:04d}-{k}.png"
            write_thumbnail(rows[i].path, bundle_dir / name)
            thumbs.append(name)
        entries.append(TitleEntry(title, rows[members[0]].author, genres, tuple(thumbs), len(members)))
    return entries, np.stack(means).astype(np.float32)


def _exemplars(train: RowOutputs, titles: list[TitleEntry]) -> TitleExemplars:
    """Every training image as an exemplar of its title, in the hidden-layer descriptor where
    the model has one (it tells unseen titles apart better than the embedding)."""
    output = "descriptor" if "descriptor" in train.outputs else "embedding"
    row = {t.name: i for i, t in enumerate(titles)}
    keep = [i for i, r in enumerate(train.rows) if r.title in row]
    return TitleExemplars.fit(output, train.outputs[output][keep],
                              np.array([row[train.rows[i].title] for i in keep], np.int32))


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
        f"- backbone `{config.model.backbone}` (weights: {config.model.weights or 'its default'}), pooling "
        f"`{config.model.pooling or 'its default'}`, input {bundle.image_size[0]}x{bundle.image_size[1]}, "
        f"embedding {config.model.embedding_dim} dims, training mode `{config.train.mode}`",
        f"- heads: {', '.join(k for k, n in (('author', bundle.authors), ('genres', bundle.genres)) if n)}, "
        "embedding",
        "",
        "## Data",
        f"- source: {source}",
        f"- training images: {len(data.train_rows)}; validation images: {len(data.val_rows)} "
        f"({data.validation})",
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
