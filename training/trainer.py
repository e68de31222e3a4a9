"""The training run: data, model, phases, checkpoints, resume, export.

Phases by backbone and `train.mode`:
- a backbone trained from scratch (style_cnn, webtoon_cnn): one phase, "train", on images;
- a pretrained backbone: "frozen" first, the heads trained on stored features (every image
  encoded once into the feature store, `training.stored_features`), then with `fine_tune` a
  "fine_tune" phase on images with the backbone's top layers unfrozen and batch norm frozen.

The run folder (`runs/<name>/`) holds config.yaml (resolved), state.json, history.csv,
curves.png, tensorboard/, the checkpoints (heads_best.keras and heads_last.keras for the
frozen phase, best.keras and last.keras for image phases) and, at the end, bundle/.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from datasets.catalog import ImageRow
from datasets.decoded_cache import decode_all
from datasets.pipeline import BalancedStream
from datasets.sampling import LabelledImages
from datasets.stop_signals import StopRequest
from models.registry import backbone_spec, check_options, check_size
from models.saving import load_model
from models.style_model import StyleModel
from models.transfer import pretrained_base
from training.callbacks import (
    EpochLog,
    EpochTensorBoard,
    ResumeState,
    StopWhenAsked,
    plot_curves,
    read_state,
    restore_rng_states,
    trim_history,
)
from training.config import RunConfig
from training.data import CARVE_RULE, TrainingData, carve_validation, load_training_data
from training.input_wait import measure_input_wait
from training.model_setup import (
    array_targets,
    build_backbone,
    build_model,
    compile_model,
    monitored,
    serving_outputs,
    stream_targets,
)
from training.runtime import configure
from training.stored_features import encode_through_store, run_encoder

log = logging.getLogger(__name__)

_PREDICT_CHUNK = 512
# Rows per predict step on features: the heads are small, and Keras's default of 32 made the
# two passes over a fonts run's 13,000 rows take 6 s of per-step overhead.
_FEATURE_BATCH = 512


@dataclass(frozen=True)
class Pool:
    """Every image of the run in one order (training rows, then given validation rows), with
    what was read of them: decoded pixels [n, H, W, 3] or features [n, dim], memory-mapped."""

    rows: tuple[ImageRow, ...]
    source: np.ndarray
    usable: np.ndarray
    train: np.ndarray  # indices of training rows
    val: np.ndarray  # indices of validation rows

    def usable_of(self, index: np.ndarray) -> np.ndarray:
        return index[self.usable[index]]


def resolve_mode(setting: str, transfer: bool, gpus: int) -> str:
    if not transfer:
        return "scratch"
    if setting == "auto":
        return "fine_tune" if gpus else "frozen"
    return setting


def train(config: RunConfig, resume: bool = False, progress: bool = True, stop: StopRequest | None = None
          ) -> Path:
    """Run (or resume) training; returns the bundle folder. `stop`: once a stop is asked for
    (SIGINT, SIGTERM), encoding ends after its shard in progress and training after its epoch in
    progress, both committed; then Stopped is raised."""
    run_dir = config.run_dir
    state = read_state(run_dir) if resume else None
    if resume and state is None:
        raise ValueError(f"{run_dir}: nothing to resume (no state.json and checkpoint)")
    if not resume and read_state(run_dir) is not None:
        raise ValueError(f"{run_dir}: a run of this name exists; pass --resume or choose another --name")
    spec = backbone_spec(config.model.backbone)
    size = tuple(config.model.image_size or spec.default_size)
    check_size(spec, size)  # before any data is read
    check_options(spec, config.model.backbone_options)
    runtime = configure(config.train)  # seeds and the dtype policy, before any layer is made
    with runtime.strategy.scope():
        backbone = build_backbone(config.model, size)  # a bad weights file fails here
    data = load_training_data(config.data)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    mode = resolve_mode(config.train.mode, spec.transfer, runtime.gpus)
    log.info("run %s on %s, %s", run_dir, runtime.describe(), mode)
    cache_dir = _cache_dir(config)

    title_authors = data.vocabulary.title_authors(data.train_rows)
    # Seeded again: the first run on a machine converts the packaged weights, which draws random
    # initial values that later runs (reading the converted file) do not; the heads must not care.
    keras.utils.set_random_seed(config.train.seed)
    with runtime.strategy.scope():
        model = build_model(config.model, data.vocabulary, size, spec, title_authors, backbone)
    pool, data = _read_pool(data, model, config, mode, size, cache_dir, progress, stop)

    done = state["epochs_done"] if state else 0
    best = state["best"] if state else None
    phases = _phases(config, mode, len(pool.val) > 0)
    for phase, start, end, learning_rate in phases:
        if done >= end:
            continue
        resuming = state if state and state["phase"] == phase and done > start else None
        if phase in ("frozen", "refit"):
            _train_heads(model, pool, data, config, run_dir, phase, (start, done, end), best, resuming,
                         learning_rate, runtime, size, stop)
        else:
            model = _train_on_images(model, pool, data, config, run_dir, phase, (start, done, end), best,
                                     resuming, learning_rate, runtime, mode, size, progress, stop)
        state = read_state(run_dir)
        done, best = state["epochs_done"], state["best"]
        if stop:
            stop.check()  # the epoch in progress was committed (state.json): --resume goes on from it
        if done < end:  # early stopping ends the run, not just the phase
            break
    plot_curves(run_dir / "history.csv", run_dir / "curves.png")
    encoder = None  # the store's encoder, when the bundle is the frozen backbone and the heads
    if (run_dir / "last.keras").is_file():  # a scratch or fine_tune phase ran: the bundle is its model
        model = load_model(run_dir / ("best.keras" if (run_dir / "best.keras").is_file() else "last.keras"))
        if mode != "scratch":
            pool = _decoded_pool(pool, size, cache_dir, progress)
        outputs = _pool_outputs(model, pool, features=False)
        val_outputs = outputs
    else:
        encoder = run_encoder(config, size)
        _load_heads(model, run_dir)
        outputs = val_outputs = _pool_outputs(model, pool, features=True)
        if phases[-1][0] == "refit":  # validation figures and thresholds stay those of the frozen heads
            _load_heads(model, run_dir, "refit_")
            outputs = _pool_outputs(model, pool, features=True)
            pool = replace(pool, train=np.concatenate([pool.train, pool.val]))
            data = replace(data, train_rows=data.train_rows + data.val_rows)
    from training.export import RowOutputs, export_bundle

    train_rows = RowOutputs.of(pool.rows, pool.usable_of(pool.train), outputs)
    val_rows = RowOutputs.of(pool.rows, pool.usable_of(pool.val), val_outputs)
    return export_bundle(model, data, config, size, run_dir, train_rows, val_rows, encoder)


def _read_pool(data: TrainingData, model: StyleModel, config: RunConfig, mode: str, size, cache_dir: Path,
               progress: bool, stop: StopRequest | None = None) -> tuple[Pool, TrainingData]:
    """Decode (scratch) or encode (pretrained) every image once; carve validation if none was given."""
    rows = data.train_rows + data.val_rows
    paths = [r.path for r in rows]
    if mode == "scratch":
        read = decode_all(paths, size, cache_dir, progress=progress)
        source = read.pixels
    else:
        # The feature store also fits the Gram projections (a resumed run reloads its own).
        read = encode_through_store(paths, len(data.train_rows), model.backbone, config, size, cache_dir,
                                    config.run_dir, progress, stop.check if stop else None)
        source = read.features
    train = np.arange(len(data.train_rows))
    val = np.arange(len(data.train_rows), len(rows))
    if not data.val_rows and config.data.val_share > 0:
        train, val = carve_validation(data.train_rows, read.dhash, data.label, config.data.val_share,
                                      config.train.seed)
        data = replace(data, train_rows=tuple(rows[i] for i in train), val_rows=tuple(rows[i] for i in val),
                       validation=f"carved {config.data.val_share:.0%} of training: {CARVE_RULE}")
        log.info("validation: %d images carved from training (%.0f%%); rule: %s", len(val),
                 100 * config.data.val_share, CARVE_RULE)
    if not len(val):
        log.warning("no validation images: monitoring training figures instead, thresholds uncalibrated")
    return Pool(tuple(rows), source, read.usable, train, val), data


def _phases(config: RunConfig, mode: str, has_val: bool) -> list[tuple[str, int, int, float]]:
    train = config.train
    if mode == "scratch":
        return [("train", 0, train.epochs, train.learning_rate)]
    phases = [("frozen", 0, train.epochs, train.learning_rate)]
    if mode == "frozen" and train.refit_with_val and has_val:
        # warm: the frozen heads go on with the validation rows added, for a share of the epochs
        refit = max(1, round(train.epochs * train.refit_share)) if train.refit_share else train.epochs
        phases.append(("refit", train.epochs, train.epochs + refit, train.learning_rate))
    if mode == "fine_tune" and train.fine_tune_epochs:
        phases.append(("fine_tune", train.epochs, train.epochs + train.fine_tune_epochs,
                       train.fine_tune_learning_rate))
    return phases


def _stream(pool: Pool, index: np.ndarray, data: TrainingData, config: RunConfig, size, model
            ) -> BalancedStream:
    """Balanced batches of the pool rows `index` (training rows: all labelled)."""
    rows = [pool.rows[i] for i in index]
    balance = replace(config.balance, label=data.label, image_size=size, seed=config.train.seed)
    labelled = LabelledImages.from_rows(rows, data.label)
    if len(labelled.paths) != len(rows):
        raise ValueError("every training row needs a label")  # load_training_data keeps only those
    targets = data.vocabulary.targets(rows)
    extra = {k: v for k, v in targets.items() if k != data.label and k in model.output}
    return BalancedStream(labelled, balance, config.augment, _cache_dir(config), progress=False,
                          extra_targets=extra, rows=(pool.source, pool.usable[index], index))


def _validation(pool: Pool, data: TrainingData, model, config: RunConfig) -> tf.data.Dataset | None:
    keep = pool.usable_of(pool.val)
    if not len(keep):
        return None
    rows = [pool.rows[i] for i in keep]
    inputs = np.asarray(pool.source[keep])
    inputs = inputs.astype(np.float32) if inputs.ndim == 2 else inputs.astype(np.float32) / 255.0
    targets = array_targets(model, data.vocabulary, rows, config.model)
    return tf.data.Dataset.from_tensor_slices((inputs, targets)).batch(config.balance.batch_size)


def _train_heads(model: StyleModel, pool: Pool, data, config: RunConfig, run_dir: Path, phase: str,
                 epochs: tuple[int, int, int], best: float | None, resuming: dict | None, learning_rate,
                 runtime, size, stop: StopRequest | None = None) -> None:
    """The heads on cached features, the backbone untouched: the frozen phase on the training
    rows, validated; the refit phase on training and validation rows together, from the frozen
    phase's last heads (or from scratch with train.refit_share 0)."""
    start, done, end = epochs
    stem = "heads_" if phase == "frozen" else "refit_"
    index = pool.train if phase == "frozen" else np.concatenate([pool.train, pool.val])
    with runtime.strategy.scope():
        if resuming:
            heads = load_model(run_dir / f"{stem}last.keras")
            restore_rng_states(heads, resuming)
            log.info("resuming the %s heads after epoch %d", phase, done)
        else:
            if phase == "refit":  # new heads, the same starting point the frozen phase had
                keras.utils.set_random_seed(config.train.seed)  # whether or not this process ran "frozen"
                model = build_model(config.model, data.vocabulary, size, backbone_spec(config.model.backbone),
                                    model.title_authors, model.backbone)
            if phase == "refit" and config.train.refit_share:
                _load_heads(model, run_dir, "heads_", best=False)  # its feature statistics too
            elif model.standardize:
                rows = pool.usable_of(index)
                model.set_feature_statistics(*_feature_statistics(pool.source, rows), len(rows))
            heads = model.head_model()
    stream = _stream(pool, index, data, config, size, heads)
    if not resuming:
        with runtime.strategy.scope():
            compile_model(heads, config.model,
                          _schedule(config, learning_rate, end - start, stream.steps_per_epoch),
                          config.train.weight_decay, config.train.jit_compile)
    val = _validation(pool, data, heads, config) if phase == "frozen" else None
    if done > 0:
        trim_history(run_dir / "history.csv", done)
    callbacks = _callbacks(run_dir, phase, monitored(heads, val is not None),
                           best if phase == "frozen" else None, config, stream.sampler.epoch_size, end,
                           resumed=resuming, checkpoint_stem=stem, early_stopping=False, appending=done > 0,
                           stop=stop)
    targets = stream_targets(heads, data.label, config.model)
    heads.fit(stream.dataset(end, start_epoch=done).map(targets), epochs=end,
              initial_epoch=done, steps_per_epoch=stream.steps_per_epoch, validation_data=val,
              callbacks=callbacks, verbose=0, shuffle=False)


def _load_heads(model: StyleModel, run_dir: Path, stem: str = "heads_", best: bool = True) -> None:
    """A head phase's best checkpoint (its last where nothing was better, or by choice) into `model`."""
    chosen = run_dir / f"{stem}best.keras"
    if not (best and chosen.is_file()):
        chosen = run_dir / f"{stem}last.keras"
    model.load_head_weights(load_model(chosen, compile=False).get_weights())


def _train_on_images(model: StyleModel, pool: Pool, data, config: RunConfig, run_dir: Path, phase: str,
                     epochs: tuple[int, int, int], best: float | None, resuming: dict | None, learning_rate,
                     runtime, mode: str, size, progress: bool, stop: StopRequest | None = None) -> StyleModel:
    """The scratch or fine_tune phase: the whole model on balanced, augmented images."""
    start, done, end = epochs
    with runtime.strategy.scope():
        if resuming:
            model = load_model(run_dir / "last.keras")
            restore_rng_states(model, resuming)
            log.info("resuming after epoch %d (%s)", done, phase)
        else:
            if phase == "fine_tune":
                _load_heads(model, run_dir)
                _unfreeze_top(model, config.train.fine_tune_layers)
    cache_dir = _cache_dir(config)
    if phase == "fine_tune":  # the frozen phase read features: images are decoded now
        pool = _decoded_pool(pool, size, cache_dir, progress)
    stream = _stream(pool, pool.train, data, config, size, model)
    if not resuming:
        with runtime.strategy.scope():
            compile_model(model, config.model, _schedule(config, learning_rate, end - start,
                                                         stream.steps_per_epoch),
                          config.train.weight_decay, config.train.jit_compile)
    to_keras = stream_targets(model, data.label, config.model)
    input_wait = None
    if _probe_input(config, runtime.gpus) and not resuming:
        input_wait = measure_input_wait(model, stream.dataset(1).map(to_keras))
        input_wait.save(run_dir / "input_wait.json")
        log.info("%s", input_wait.describe())
        with runtime.strategy.scope():  # a fresh optimizer: the probe's steps leave no trace
            compile_model(model, config.model, _schedule(config, learning_rate, end - start,
                                                         stream.steps_per_epoch),
                          config.train.weight_decay, config.train.jit_compile)
    val = _validation(pool, data, model, config)
    if done > 0:
        trim_history(run_dir / "history.csv", done)
    callbacks = _callbacks(run_dir, phase, monitored(model, val is not None), best, config,
                           stream.sampler.epoch_size, end, resumed=resuming, appending=done > 0,
                           input_wait=input_wait.share if input_wait else None, stop=stop)
    model.fit(stream.dataset(end, start_epoch=done).map(to_keras), epochs=end, initial_epoch=done,
              steps_per_epoch=stream.steps_per_epoch, validation_data=val, callbacks=callbacks, verbose=0,
              shuffle=False)
    return model


def _decoded_pool(pool: Pool, size, cache_dir: Path, progress: bool) -> Pool:
    decoded = decode_all([r.path for r in pool.rows], size, cache_dir, progress=progress)
    return replace(pool, source=decoded.pixels, usable=pool.usable & decoded.usable)


def _cache_dir(config: RunConfig) -> Path:
    return Path(config.data.cache_dir) if config.data.cache_dir else config.run_dir.parent / "cache"


def _schedule(config: RunConfig, learning_rate: float, epochs: int, steps_per_epoch: int):
    if config.train.lr_schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=epochs * steps_per_epoch,
                                                      alpha=0.02)
    return learning_rate


def _feature_statistics(features: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and variance over `rows`, accumulated in float64 a chunk at a time."""
    total = np.zeros(features.shape[1])
    squares = np.zeros(features.shape[1])
    for start in range(0, len(rows), 4096):
        chunk = np.asarray(features[rows[start:start + 4096]], np.float64)
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    mean = total / len(rows)
    return mean, np.maximum(squares / len(rows) - np.square(mean), 0.0)


def _unfreeze_top(model: StyleModel, layers: int) -> None:
    base = pretrained_base(model.backbone)
    base.trainable = True
    cut = len(base.layers) - layers
    for i, layer in enumerate(base.layers):
        # Batch norm keeps its ImageNet statistics: small batches would wreck them.
        layer.trainable = i >= cut and not isinstance(layer, keras.layers.BatchNormalization)


def _pool_outputs(model: StyleModel, pool: Pool, features: bool) -> dict[str, np.ndarray]:
    """Serving outputs for every usable row of the pool (zeros elsewhere)."""
    network = model.head_model() if features else model
    keep = np.flatnonzero(pool.usable)
    outputs: dict[str, np.ndarray] = {}
    for start in range(0, len(keep), _PREDICT_CHUNK):
        chunk = keep[start:start + _PREDICT_CHUNK]
        inputs = np.asarray(pool.source[chunk], np.float32)
        predicted = serving_outputs(network.predict(inputs, batch_size=_FEATURE_BATCH, verbose=0) if features
                                    else network.predict(inputs / 255.0, verbose=0))
        for name, value in predicted.items():
            if name not in outputs:
                outputs[name] = np.zeros((len(pool.rows), *value.shape[1:]), np.float32)
            outputs[name][chunk] = value
    return outputs


def _probe_input(config: RunConfig, gpus: int) -> bool:
    setting = config.train.input_wait_probe
    return setting == "always" or (setting == "auto" and gpus > 0)


def _callbacks(run_dir: Path, phase: str, monitor: str, best: float | None, config: RunConfig,
               images_per_epoch: int, epochs: int, resumed: dict | None, appending: bool,
               input_wait: float | None = None, checkpoint_stem: str = "",
               early_stopping: bool = True, stop: StopRequest | None = None
               ) -> list[keras.callbacks.Callback]:
    """`resumed`: the state.json of the interrupted run (None for a fresh phase); `appending`:
    history.csv already holds earlier epochs."""
    train = config.train
    callbacks = [
        keras.callbacks.ModelCheckpoint(run_dir / f"{checkpoint_stem}best.keras", monitor=monitor, mode="max",
                                        save_best_only=True, initial_value_threshold=best),
        keras.callbacks.CSVLogger(run_dir / "history.csv", append=appending),
        EpochTensorBoard(run_dir / "tensorboard"),
        EpochLog(images_per_epoch, epochs, input_wait),
    ]
    if early_stopping:
        callbacks.insert(1, keras.callbacks.EarlyStopping(monitor=monitor, mode="max",
                                                          patience=train.early_stopping_patience))
    if train.lr_schedule == "plateau":
        callbacks.insert(1, keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max",
                                                              factor=train.lr_factor,
                                                              patience=train.lr_patience))
    if stop:  # before ResumeState, which commits the epoch when training is stopping
        callbacks.append(StopWhenAsked(stop))
    # Last: state.json may say an epoch is done only once its history row, checkpoint and
    # learning-rate change are on disk, or a kill in between would lose them on resume.
    callbacks.append(ResumeState(run_dir, phase, monitor, best, f"{checkpoint_stem}last.keras",
                                 resumed, train.checkpoint_seconds).track(callbacks))
    return callbacks
