"""What a backbone's features depend on, as one string: the key of the feature cache, and the
identity of the feature store's encoder. Nothing here builds a model or imports Keras, so that a
command can tell whether the store already holds its encoder without starting TensorFlow."""

from __future__ import annotations

import json
from dataclasses import replace

from datasets.features.digests import file_sha256
from datasets.images import resize_fingerprint
from models.packaged_weights import PACKAGED, packaged_state_dict
from models.registry import backbone_spec, check_options, resolve_weights
from training.config import ModelConfig


def backbone_identity(config: ModelConfig, size: tuple[int, int], seed: int, projection: str = "") -> str:
    """Backbone name, pooling, options, input size, the weights' digest (random initial
    weights depend on the seed), the installed image resize's fingerprint and `projection`,
    the fitted Gram projections' digest."""
    spec = backbone_spec(config.backbone)
    weights = resolve_weights(spec, config.weights)
    if weights is None:
        source = f"random init, seed {seed}"
    elif weights == "imagenet":
        variant = config.backbone.removeprefix("efficientnet_")
        source = (f"imagenet sha256 {file_sha256(packaged_state_dict(variant))}" if variant in PACKAGED
                  else f"imagenet ({config.backbone}, keras.applications)")
    else:
        source = f"file sha256 {file_sha256(weights)}"
    return json.dumps({"backbone": config.backbone, "pooling": config.pooling or spec.default_pooling,
                       "options": config.backbone_options, "size": list(size), "weights": source,
                       "resize": resize_fingerprint(tuple(size)), "projection": projection},
                      sort_keys=True, default=list)


def raw_model_config(config: ModelConfig) -> ModelConfig:
    """The backbone with every Gram tap unprojected, where the backbone has projections."""
    options = dict(config.backbone_options)
    spec = backbone_spec(config.backbone)
    try:
        check_options(spec, {**options, "gram_channels": None})
    except ValueError:
        return config
    return replace(config, backbone_options={**options, "gram_channels": None})


def encoder_identity(config: ModelConfig, size: tuple[int, int], seed: int) -> dict:
    """What names the store's encoder for this backbone (its key is a digest of it)."""
    return json.loads(backbone_identity(raw_model_config(config), size, seed))
