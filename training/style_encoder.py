"""The store's encoder for a pretrained backbone: its style statistics before any projection.

What the store keeps must not depend on the run, and the Gram projections of the deep taps
are fitted from each run's training images. So the encoder outputs the full Gram upper
triangle of every tap (groups 4 and 5 of the default: 3,240 and 6,328 entries instead of
1,176 each; 10,824 dims in all, 21.6 KB per image in float16), and training projects them:
the Gram of the projected channels is PᵀGP, so the run's features follow exactly from G.
The projection itself is fitted from the stored G of training images (their mean is what the
fit needs), with no pass of the network.

The encoder is the backbone converted once to LiteRT (XNNPACK on the CPU), checked against
Keras on real images at conversion, and kept in the store for every worker of every engine.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from datasets.features.encoders import EncoderSpec, encoder_key, other_resizes, ready_encoder
from datasets.features.store import FeatureStore
from datasets.images import ImageError, load_resized
from models.channel_statistics import ChannelStatistics
from models.gram_pooling import GramPooling
from training.config import ModelConfig
from training.weights_identity import encoder_identity, raw_model_config

log = logging.getLogger(__name__)

MIN_ENCODER_COSINE = 0.9999  # LiteRT against Keras, per image, at conversion
_CHECK_IMAGES = 16


def feature_layout(backbone: keras.Model) -> tuple[dict, ...]:
    """The parts of a backbone's output, in order: Gram, mean/std and average-pooled taps."""
    parts = []
    for layer in backbone.layers:
        if isinstance(layer, GramPooling):
            channels = int(layer.input.shape[-1])
            kept = layer.channels or channels
            parts.append({"name": layer.name, "kind": "gram", "channels": channels,
                          "width": kept * (kept + 1) // 2})
        elif isinstance(layer, ChannelStatistics):
            parts.append({"name": layer.name, "kind": "mean_std", "width": 2 * int(layer.input.shape[-1])})
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            parts.append({"name": layer.name, "kind": "avg", "width": int(layer.input.shape[-1])})
    if sum(p["width"] for p in parts) != int(backbone.output_shape[-1]):
        return ({"name": "features", "kind": "raw", "width": int(backbone.output_shape[-1])},)
    return tuple(parts)


def ensure_encoder(store: FeatureStore, config: ModelConfig, size: tuple[int, int], seed: int,
                   check_paths: Sequence[os.PathLike]) -> EncoderSpec:
    """The store's encoder for this backbone, converted and checked the first time it is asked for."""
    from training.model_setup import build_backbone

    raw = raw_model_config(config)
    identity = encoder_identity(config, size, seed)
    key = encoder_key(identity)
    root = store.root
    spec = ready_encoder(root, key)
    if spec is not None:
        return spec
    for other, resize in other_resizes(root, identity).items():
        why = ("was made before encoders recorded their resize" if resize is None else
               "resizes as another Pillow release does; give every machine the same release")
        log.warning("%s: the store's encoder %s is this backbone but %s: this run encodes under %s, "
                    "and `python -m datasets.features gc --store %s --drop-encoder %s` frees the other "
                    "once nothing uses it", root, other, why, key, root, other)
    backbone = build_backbone(raw, size)
    spec = EncoderSpec(key, identity, tuple(size), int(backbone.output_shape[-1]), feature_layout(backbone),
                       root)
    spec.tflite_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = spec.tflite_path.with_name(f".{spec.key}.{os.getpid()}.tmp.tflite")
    from datasets.tf_runtime import quiet_stderr

    with quiet_stderr():
        backbone.export(str(tmp), format="litert", verbose=False)
    try:
        _check_conversion(backbone, tmp, size, check_paths)
        spec.save()
        os.replace(tmp, spec.tflite_path)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("encoder %s: %s at %dx%d, %d features, converted to LiteRT", key, config.backbone, *size,
             spec.dim)
    return spec


def _check_conversion(backbone: keras.Model, tflite: Path, size, paths) -> float:
    images = []
    for path in paths:
        try:
            images.append(load_resized(path, size))
        except ImageError:
            continue
        if len(images) == _CHECK_IMAGES:
            break
    if not images:  # nothing decodable to check on: a grey and a noise image
        rng = np.random.default_rng(0)
        images = [np.full((*size, 3), 128, np.uint8), rng.integers(0, 256, (*size, 3), dtype=np.uint8)]
    pixels = np.stack(images)
    from ai_edge_litert.interpreter import Interpreter

    from datasets.tf_runtime import quiet_stderr

    with quiet_stderr():  # XNNPACK announces itself when the first call applies it
        runner = Interpreter(model_path=str(tflite), num_threads=os.cpu_count()).get_signature_runner()
        name = next(iter(runner.get_input_details()))
        got = np.asarray(next(iter(runner(**{name: pixels.astype(np.float32) / 255.0}).values())), np.float64)
    want = np.asarray(backbone.predict_on_batch(pixels.astype(np.float32) / 255.0), np.float64)
    cosine = float(np.min(np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1)
                                                     + 1e-12)))
    if cosine < MIN_ENCODER_COSINE:
        raise RuntimeError(f"{tflite}: LiteRT and Keras features disagree (cosine {cosine:.6f} < "
                           f"{MIN_ENCODER_COSINE})")
    log.info("LiteRT encoder agrees with Keras on %d images (min cosine %.6f)", len(pixels), cosine)
    return cosine


def keras_encoder(config: ModelConfig, size: tuple[int, int]):
    """The store's encoder run by Keras (uint8 images -> float32 features): on a GPU, Keras is the
    faster runtime. Its features agree with the LiteRT file's to the conversion check's cosine."""
    from training.model_setup import build_backbone

    backbone = build_backbone(raw_model_config(config), size)

    def encode(images: np.ndarray) -> np.ndarray:
        return np.asarray(backbone.predict_on_batch(np.asarray(images, np.float32) / 255.0), np.float32)
    return encode


# -- from stored statistics to a run's features -------------------------------------------------
def _upper(channels: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(channels)


def full_gram(upper: np.ndarray, channels: int) -> np.ndarray:
    """[m, C(C+1)/2] upper triangles -> [m, C, C] symmetric matrices."""
    rows, cols = _upper(channels)
    gram = np.zeros((len(upper), channels, channels), np.float32)
    gram[:, rows, cols] = upper
    gram[:, cols, rows] = upper
    return gram


def run_transform(layout: Sequence[dict], projections: dict[str, np.ndarray]):
    """A function [m, stored dim] -> [m, the run's feature dim]: each projected Gram tap as PᵀGP."""
    def transform(stored: np.ndarray) -> np.ndarray:
        parts, start = [], 0
        for part in layout:
            block = stored[:, start:start + part["width"]]  # the encoder's Gram parts are unprojected
            start += part["width"]
            matrix = projections.get(part["name"])
            if matrix is None:
                parts.append(block)
                continue
            projected = np.einsum("ck,mcd,dl->mkl", matrix, full_gram(block, part["channels"]), matrix,
                                  optimize=True)
            rows, cols = _upper(matrix.shape[1])
            parts.append(projected[:, rows, cols])
        return np.concatenate(parts, axis=1)
    return transform


def mean_grams(stored: np.ndarray, layout: Sequence[dict], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The mean C x C Gram of each named tap over the rows of `stored` (float64)."""
    out, start = {}, 0
    for part in layout:
        if part["name"] in names:
            mean_upper = np.asarray(stored[:, start:start + part["width"]], np.float64).mean(axis=0)
            out[part["name"]] = full_gram(mean_upper[None], part["channels"])[0].astype(np.float64)
        start += part["width"]
    return out
