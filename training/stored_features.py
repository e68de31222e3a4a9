"""A run's frozen features from the feature store: encode what it lacks, project, gather.

1. Every image's content digest (remembered by path, size and mtime).
2. The images the store lacks for this backbone's encoder are encoded by the configured engine.
3. The Gram projections are fitted from the stored statistics of a sample of training images
   (or reloaded from the run, when resuming).
4. The run's features, PᵀGP of each projected tap, are gathered shard by shard into one
   memory-mapped file keyed by the digests and the projections, which a resumed run reuses; the
   cache folder keeps the few most recently used of these (datasets/derived_files.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from datasets.derived_files import PROJECTED, mark_used, prune
from datasets.features.digests import content_digests
from datasets.features.encoders import EncoderSpec, encoder_key, ready_encoder
from datasets.features.engines import encode_missing
from datasets.features.store import FeatureStore
from training.config import RunConfig
from training.feature_cache import EncodedImages
from training.gram_projection import (
    SAMPLE_IMAGES,
    projected_gram_layers,
    projection_digest,
    set_from_mean_grams,
    set_gram_projections,
)
from training.style_encoder import (
    ensure_encoder,
    keras_encoder,
    mean_grams,
    run_transform,
)
from training.weights_identity import encoder_identity

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


def run_encoder(config: RunConfig, size: tuple[int, int]) -> EncoderSpec | None:
    """The store's encoder that this run's frozen features came from; None if it has none."""
    identity = encoder_identity(config.model, size, config.train.seed)
    return ready_encoder(config.store_root, encoder_key(identity))


def encode_through_store(paths: Sequence[Path], train_count: int, backbone: keras.Model, config: RunConfig,
                         size: tuple[int, int], cache_dir: Path, run_dir: Path, progress: bool,
                         check: Callable[[], None] | None = None) -> EncodedImages:
    """Features of every image of the run (the first `train_count` are its training images), as
    `training.feature_cache.encode_all` gave them, through the store; sets `backbone`'s projections."""
    with FeatureStore(config.store_root) as store:
        spec = ensure_encoder(store, config.model, size, config.train.seed, paths[:64])
        digests = content_digests(store, paths, progress=progress)
        features = config.features
        import tensorflow as tf

        # LiteRT is the fastest runtime measured on a CPU; on a GPU, Keras is.
        on_gpu = features.engine == "local" and bool(tf.config.list_physical_devices("GPU"))
        report = encode_missing(store, spec, digests, paths, features.engine,
                                ray_address=features.ray_address, workers=features.workers, progress=progress,
                                encoder=keras_encoder(config.model, size) if on_gpu else None, check=check)
        _set_projections(store, spec, backbone, digests[:train_count], config.train.seed,
                         run_dir / "gram_projection.npz")
        return _gather(store, spec, backbone, digests, paths, cache_dir, report.images_encoded > 0)


def _set_projections(store: FeatureStore, spec: EncoderSpec, backbone: keras.Model, train_digests, seed: int,
                     saved: Path) -> None:
    layers = projected_gram_layers(backbone)
    if not layers:
        return
    if saved.is_file():  # a resumed run keeps the projections its checkpoints were trained with
        with np.load(saved) as fitted:
            set_gram_projections(backbone, dict(fitted))
        return
    chosen = np.random.default_rng(seed).permutation(len(train_digests))[:SAMPLE_IMAGES]
    sample = np.zeros((len(chosen), spec.dim), np.float32)
    found, usable, _, _ = store.gather(spec.key, [train_digests[i] for i in chosen], sample)
    keep = found & usable
    if not keep.any():
        raise ValueError("no training image could be decoded to fit the Gram projections")
    means = mean_grams(sample[keep], spec.layout, [layer.name for layer in layers])
    fitted = set_from_mean_grams(layers, [means[layer.name] for layer in layers])
    tmp = saved.with_name(saved.stem + ".tmp.npz")
    np.savez(tmp, **fitted)
    tmp.replace(saved)


def _gather(store: FeatureStore, spec: EncoderSpec, backbone: keras.Model, digests, paths, cache_dir: Path,
            built: bool) -> EncodedImages:
    key = hashlib.sha256(f"v{_FORMAT_VERSION} {spec.key} {projection_digest(backbone)}\n".encode())
    for digest in digests:
        key.update(f"{digest}\n".encode())
    array_path = cache_dir / f"{PROJECTED}{key.hexdigest()[:20]}.npy"
    meta_path = array_path.with_suffix(".json")
    if not mark_used(array_path, meta_path):
        _write_run_features(store, spec, backbone, digests, paths, array_path, meta_path)
        built = True
    prune(cache_dir, PROJECTED)
    meta = json.loads(meta_path.read_text())
    for problem in meta["problems"]:
        log.warning("skipped corrupt image: %s", problem)
    return EncodedImages(np.load(array_path, mmap_mode="r"), np.array(meta["usable"], bool),
                         np.array(meta["dhash"], np.int64), tuple(meta["problems"]), array_path, built)


def _write_run_features(store: FeatureStore, spec: EncoderSpec, backbone, digests, paths, array_path: Path,
                        meta_path: Path) -> None:
    layers = projected_gram_layers(backbone)
    projections = {layer.name: keras.ops.convert_to_numpy(layer.projection).astype(np.float32)
                   for layer in layers}
    transform = run_transform(spec.layout, projections)
    dim = int(backbone.output_shape[-1])
    array_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = array_path.with_name(f"{array_path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(digests), dim))
    found, usable, dhash, problems = store.gather(spec.key, list(digests), out, transform)
    lost = [i for i, d in enumerate(digests) if d is not None and not found[i]]
    if lost:  # a shard found corrupt while reading: encode what it held, then read those again
        encode_missing(store, spec, [digests[i] for i in lost], [paths[i] for i in lost], progress=False)
        again = np.zeros((len(lost), dim), np.float32)
        _, usable2, dhash2, problems2 = store.gather(spec.key, [digests[i] for i in lost], again, transform)
        out[lost], usable[lost], dhash[lost] = again, usable2, dhash2
        problems.extend(problems2)
    problems.extend(f"{paths[i]}: cannot read the file" for i, d in enumerate(digests) if d is None)
    out.flush()
    del out
    os.replace(tmp, array_path)
    meta_tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.tmp")
    meta_tmp.write_text(json.dumps({"version": _FORMAT_VERSION, "dim": dim, "usable": usable.tolist(),
                                    "dhash": dhash.tolist(), "problems": problems}))
    os.replace(meta_tmp, meta_path)
