"""ImageNet backbones from keras.applications, for the frozen-then-fine-tune schedule.

`weights` is None (random), "imagenet" (Keras downloads it where the network
allows) or the path of a local `.weights.h5` file of the same architecture
without its top, which is what machines without network use.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from models.registry import register_backbone

if TYPE_CHECKING:
    import keras


def pretrained_base(backbone: keras.Model) -> keras.Model:
    """The pretrained part of a transfer backbone: frozen first, then partly unfrozen."""
    import keras

    for layer in backbone.layers:
        if isinstance(layer, keras.Model):
            return layer
    raise ValueError(f"{backbone.name} has no pretrained base model")


def _check_weights(weights: str | None) -> str | None:
    if weights in (None, "imagenet"):
        return weights
    if not Path(weights).is_file():
        raise ValueError(f"{weights}: no such weights file (expected 'imagenet' or a .weights.h5 file)")
    return str(weights)


def _pretrained(constructor, input_shape, weights: str | None, **options) -> keras.Model:
    return constructor(input_shape=input_shape, include_top=False, weights=_check_weights(weights), **options)


def _wrap(base, input_shape, pooling: str, name: str, preprocess=None):
    import keras

    from models.pooling import pool_features

    inputs = keras.Input(input_shape, name="image")
    x = preprocess(inputs) if preprocess is not None else keras.layers.Rescaling(255.0, name="to_255")(inputs)
    return keras.Model(inputs, pool_features(base(x), pooling), name=name)


@register_backbone("mobilenet_v3_small", default_size=(96, 96), min_size=32, transfer=True,
                   description="MobileNetV3-Small (keras.applications)")
def mobilenet_v3_small(input_shape, pooling: str = "avg", weights: str | None = None):
    import keras

    base = _pretrained(keras.applications.MobileNetV3Small, input_shape, weights, include_preprocessing=True)
    return _wrap(base, input_shape, pooling, "mobilenet_v3_small")


@register_backbone("efficientnetv2_b0", default_size=(96, 96), min_size=32, transfer=True,
                   description="EfficientNetV2-B0 (keras.applications)")
def efficientnetv2_b0(input_shape, pooling: str = "avg", weights: str | None = None):
    import keras

    base = _pretrained(keras.applications.EfficientNetV2B0, input_shape, weights, include_preprocessing=True)
    return _wrap(base, input_shape, pooling, "efficientnetv2_b0")


@register_backbone("resnet50", default_size=(96, 96), min_size=32, transfer=True,
                   description="ResNet50 (keras.applications)")
def resnet50(input_shape, pooling: str = "avg", weights: str | None = None):
    import keras

    from models.caffe_preprocess import CaffePreprocess

    base = _pretrained(keras.applications.ResNet50, input_shape, weights)
    return _wrap(base, input_shape, pooling, "resnet50", CaffePreprocess(name="caffe_preprocess"))
