"""The training run: data, model, phases (frozen, fine-tune), checkpoints, resume, export.

The run folder (`runs/<name>/`) holds config.yaml (resolved), best.keras, last.keras,
state.json, history.csv, curves.png, tensorboard/ and, at the end, bundle/.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from datasets.decoded_cache import decode_all
from datasets.pipeline import BalancedStream
from models.cosine_margin_loss import CosineMarginLoss
from models.registry import backbone_spec, check_options, check_size, create_backbone
from models.saving import load_model
from models.style_model import StyleModel
from models.transfer import pretrained_base
from training.callbacks import EpochLog, ResumeState, plot_curves, read_state, trim_history
from training.config import ModelConfig, RunConfig
from training.data import TrainingData, Vocabulary, load_training_data
from training.input_wait import measure_input_wait
from training.runtime import configure

log = logging.getLogger(__name__)


def build_model(config: ModelConfig, vocabulary: Vocabulary, size: tuple[int, int]) -> StyleModel:
    backbone = create_backbone(config.backbone, input_shape=(*size, 3), pooling=config.pooling,
                               weights=config.weights, **config.backbone_options)
    return StyleModel(backbone, num_authors=len(vocabulary.authors), num_genres=len(vocabulary.genres),
                      num_titles=len(vocabulary.titles) if config.title_loss_weight > 0 else 0,
                      embedding_dim=config.embedding_dim, dropout=config.dropout,
                      title_scale=config.title_scale)


def compile_model(model: StyleModel, config: ModelConfig, learning_rate, weight_decay: float,
                  jit_compile: bool) -> None:
    """`learning_rate` is a number or a keras LearningRateSchedule."""
    losses, weights, metrics = {}, {}, {}
    if model.num_authors:
        losses["author"] = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics["author"] = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                             keras.metrics.TopKCategoricalAccuracy(k=3, name="top3")]
        weights["author"] = 1.0
    if model.num_genres:
        losses["genres"] = (keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=config.focal_alpha, gamma=config.focal_gamma)
            if config.genre_loss == "focal" else keras.losses.BinaryCrossentropy())
        metrics["genres"] = [keras.metrics.AUC(multi_label=True, name="auc")]
        weights["genres"] = 1.0
    if model.num_titles:
        losses["title"] = CosineMarginLoss(config.title_scale, config.title_margin)
        weights["title"] = config.title_loss_weight
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay),
                  loss=losses, loss_weights=weights, metrics=metrics, jit_compile=jit_compile)


def monitored(vocabulary: Vocabulary, has_val: bool) -> str:
    metric = "author_accuracy" if vocabulary.authors else "genres_auc"
    return f"val_{metric}" if has_val else metric


def train(config: RunConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the bundle folder."""
    run_dir = config.run_dir
    state = read_state(run_dir) if resume else None
    if resume and state is None:
        raise ValueError(f"{run_dir}: nothing to resume (no last.keras and state.json)")
    if not resume and read_state(run_dir) is not None:
        raise ValueError(f"{run_dir}: a run of this name exists; pass --resume or choose another --name")
    spec = backbone_spec(config.model.backbone)
    size = tuple(config.model.image_size or spec.default_size)
    check_size(spec, size)  # before any data is read
    check_options(spec, config.model.backbone_options)
    data = load_training_data(config.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    runtime = configure(config.train)
    log.info("run %s on %s", run_dir, runtime.describe())

    cache_dir = Path(config.data.cache_dir) if config.data.cache_dir else run_dir.parent / "cache"
    balance = replace(config.balance, label=data.label, image_size=size, seed=config.train.seed)
    targets = data.vocabulary.targets(data.train_rows)
    extra = {k: v for k, v in targets.items() if k != data.label}
    if config.model.title_loss_weight <= 0:
        extra.pop("title", None)
    stream = BalancedStream(data.balanced_images(), balance, config.augment, cache_dir, progress,
                            extra_targets=extra)
    val = validation_dataset(data, size, cache_dir, balance.batch_size, config.model, progress)
    monitor = monitored(data.vocabulary, val is not None)

    with runtime.strategy.scope():
        if state:
            model = load_model(run_dir / "last.keras")
            log.info("resuming after epoch %d (%s)", state["epochs_done"], state["phase"])
        else:
            model = build_model(config.model, data.vocabulary, size)
    done = state["epochs_done"] if state else 0
    best = state["best"] if state else None
    input_wait = None
    for phase, start, end, learning_rate in _phases(config, spec.transfer):
        if done >= end:
            continue
        entering = not state or state["phase"] != phase or done == start
        if entering:
            with runtime.strategy.scope():
                _set_trainable(model, phase, config)
                if config.train.lr_schedule == "cosine":
                    learning_rate = keras.optimizers.schedules.CosineDecay(
                        learning_rate, decay_steps=(end - start) * stream.steps_per_epoch, alpha=0.02)
                compile_model(model, config.model, learning_rate, config.train.weight_decay,
                              config.train.jit_compile)
        to_keras = _keras_targets(len(data.vocabulary.authors), config.model.embedding_dim)
        train_data = stream.dataset(end, start_epoch=done).map(to_keras)
        if input_wait is None and _probe_input(config, runtime.gpus) and not state:
            input_wait = measure_input_wait(model, stream.dataset(1).map(to_keras))
            input_wait.save(run_dir / "input_wait.json")
            log.info("%s", input_wait.describe())
            with runtime.strategy.scope():  # a fresh optimizer: the probe's steps leave no trace
                compile_model(model, config.model, learning_rate, config.train.weight_decay,
                              config.train.jit_compile)
        if done > 0:
            trim_history(run_dir / "history.csv", done)
        callbacks = _callbacks(run_dir, phase, monitor, best, config, stream.sampler.epoch_size, end,
                               resumed=done > 0, input_wait=input_wait.share if input_wait else None)
        model.fit(train_data, epochs=end, initial_epoch=done, steps_per_epoch=stream.steps_per_epoch,
                  validation_data=val, callbacks=callbacks, verbose=0, shuffle=False)
        state = read_state(run_dir)
        done, best = state["epochs_done"], state["best"]
        if done < end:  # early stopping ends the run, not just the phase
            break
    plot_curves(run_dir / "history.csv", run_dir / "curves.png")
    from training.export import export_bundle

    chosen = run_dir / ("best.keras" if (run_dir / "best.keras").is_file() else "last.keras")
    return export_bundle(load_model(chosen), data, config, size, cache_dir, run_dir)


def validation_dataset(data: TrainingData, size: tuple[int, int], cache_dir: Path, batch_size: int,
                       config: ModelConfig, progress: bool) -> tf.data.Dataset | None:
    """Unaugmented validation images with every head's targets; None without val rows."""
    if not data.val_rows:
        log.warning("no validation images: monitoring training figures instead")
        return None
    decoded = decode_all([r.path for r in data.val_rows], size, cache_dir, progress=progress)
    keep = np.flatnonzero(decoded.usable)
    targets = data.vocabulary.targets([data.val_rows[i] for i in keep])
    if "title" in targets:
        # Unseen titles (a --by title split) have no class: their title loss is meaningless
        # but harmless; the monitored author figures are exact.
        targets["title"] = np.maximum(targets["title"], 0)
        if config.title_loss_weight <= 0:
            targets.pop("title")
    if "author" in targets:
        targets["author"] = np.eye(len(data.vocabulary.authors), dtype=np.float32)[targets["author"]]
    targets["embedding"] = np.zeros((len(keep), config.embedding_dim), np.float32)
    images = np.asarray(decoded.pixels[keep], dtype=np.float32) / 255.0
    return tf.data.Dataset.from_tensor_slices((images, targets)).batch(batch_size)


def _keras_targets(authors: int, embedding_dim: int):
    """One-hot authors (label smoothing needs them) and a placeholder for the embedding output,
    which has no loss but for which Keras still expects a target."""
    def convert(images, targets, weights):
        if not isinstance(targets, dict):
            targets = {"author" if authors else "genres": targets}
        if "author" in targets and authors:
            targets = {**targets, "author": tf.one_hot(targets["author"], authors)}
        targets = {**targets, "embedding": tf.zeros([tf.shape(images)[0], embedding_dim])}
        return images, targets, weights
    return convert


def _phases(config: RunConfig, transfer: bool) -> list[tuple[str, int, int, float]]:
    epochs, train = config.train.epochs, config.train
    if not transfer:
        return [("train", 0, epochs, train.learning_rate)]
    frozen = min(train.freeze_epochs, epochs)
    return [("frozen", 0, frozen, train.learning_rate),
            ("fine_tune", frozen, epochs, train.fine_tune_learning_rate)]


def _set_trainable(model: StyleModel, phase: str, config: RunConfig) -> None:
    if phase == "train":
        return
    base = pretrained_base(model.backbone)
    if phase == "frozen":
        base.trainable = False
        return
    base.trainable = True
    cut = len(base.layers) - config.train.fine_tune_layers
    for i, layer in enumerate(base.layers):
        # Batch norm keeps its ImageNet statistics: small batches would wreck them.
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)


def _probe_input(config: RunConfig, gpus: int) -> bool:
    setting = config.train.input_wait_probe
    return setting == "always" or (setting == "auto" and gpus > 0)


def _callbacks(run_dir: Path, phase: str, monitor: str, best: float | None, config: RunConfig,
               images_per_epoch: int, epochs: int, resumed: bool,
               input_wait: float | None = None) -> list[keras.callbacks.Callback]:
    train = config.train
    callbacks = [
        keras.callbacks.ModelCheckpoint(run_dir / "best.keras", monitor=monitor, mode="max",
                                        save_best_only=True, initial_value_threshold=best),
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=train.early_stopping_patience),
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=resumed),
        keras.callbacks.TensorBoard(run_dir / "tensorboard", write_graph=False, profile_batch=0),
        EpochLog(images_per_epoch, epochs, input_wait),
    ]
    if train.lr_schedule == "plateau":
        callbacks.insert(2, keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max",
                                                              factor=train.lr_factor,
                                                              patience=train.lr_patience))
    # Last: state.json may say an epoch is done only once its history row, checkpoint and
    # learning-rate change are on disk, or a kill in between would lose them on resume.
    callbacks.append(ResumeState(run_dir, phase, monitor, best))
    return callbacks
