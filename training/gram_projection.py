"""Fitting the channel projections of projected Gram pooling from training images.

A `GramPooling(channels=K)` layer projects its tap's C channels onto K directions before
the Gram matrix. The directions are the top-K eigenvectors of the training images' mean
(uncentred) C x C Gram matrix: the subspace that holds most of the tap's correlation
energy. Like a Normalization layer's statistics they come from data, not gradients, so
they are fitted once per run from a sample of the training images: from their Gram matrices
in the feature store (`training.stored_features`, no pass of the network), or here from the
images themselves (`fit_gram_projections`, the reference the store's fit agrees with).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from datasets.images import ImageError, load_resized
from models.gram_pooling import GramPooling

log = logging.getLogger(__name__)

SAMPLE_IMAGES = 512  # the mean Gram of 512 images is stable to ~1e-3 of its energy
_BATCH = 32


def projected_gram_layers(backbone: keras.Model) -> list[GramPooling]:
    return [layer for layer in backbone.layers if isinstance(layer, GramPooling) and layer.channels]


def fit_gram_projections(backbone: keras.Model, paths: Sequence[Path], size: tuple[int, int],
                         seed: int, sample: int = SAMPLE_IMAGES) -> dict[str, np.ndarray]:
    """Fit and set every projected Gram layer of `backbone`; returns {layer name: [C, K]}.
    Images that cannot be decoded are skipped (the encoder reports them)."""
    layers = projected_gram_layers(backbone)
    if not layers:
        return {}
    taps = keras.Model(backbone.input, [layer.input for layer in layers])
    chosen = np.random.default_rng(seed).permutation(len(paths))[:sample]
    sums = [np.zeros((layer.input.shape[-1],) * 2) for layer in layers]
    count = 0
    for start in range(0, len(chosen), _BATCH):
        images = []
        for i in chosen[start:start + _BATCH]:
            try:
                images.append(load_resized(paths[i], size))
            except ImageError:
                continue
        if not images:
            continue
        maps = taps.predict_on_batch(np.stack(images).astype(np.float32) / 255.0)
        maps = maps if isinstance(maps, list | tuple) else [maps]
        for total, feature_map in zip(sums, maps, strict=True):
            flat = np.asarray(feature_map, np.float64).reshape(len(images), -1, feature_map.shape[-1])
            total += np.einsum("npc,npd->cd", flat, flat) / flat.shape[1]
        count += len(images)
    if not count:
        raise ValueError("no training image could be decoded to fit the Gram projections")
    return set_from_mean_grams(layers, [total / count for total in sums])


def set_from_mean_grams(layers: Sequence[GramPooling], means: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Set each layer's projection to the leading eigenvectors of its tap's mean Gram matrix."""
    fitted = {}
    for layer, mean in zip(layers, means, strict=True):
        values, vectors = np.linalg.eigh(mean)
        order = np.argsort(values)[::-1][:layer.channels]
        # A fixed sign per direction: the Gram of a projection does not depend on the sign,
        # but a reproducible matrix keeps cache keys and saved models reproducible.
        matrix = vectors[:, order] * np.sign(vectors[np.abs(vectors[:, order]).argmax(0), order])
        layer.set_projection(matrix)
        fitted[layer.name] = matrix.astype(np.float32)
        log.info("%s: %d of %d channels keep %.1f%% of the mean Gram energy", layer.name, layer.channels,
                 len(values), 100 * values[order].sum() / values.sum())
    return fitted


def set_gram_projections(backbone: keras.Model, fitted: dict[str, np.ndarray]) -> None:
    for layer in projected_gram_layers(backbone):
        layer.set_projection(fitted[layer.name])


def projection_digest(backbone: keras.Model) -> str:
    """A digest of every projection matrix: part of the feature cache's key."""
    digest = hashlib.sha256()
    for layer in projected_gram_layers(backbone):
        digest.update(layer.name.encode())
        matrix = keras.ops.convert_to_numpy(layer.projection)
        digest.update(np.ascontiguousarray(matrix, np.float32).tobytes())
    return digest.hexdigest()[:16]
