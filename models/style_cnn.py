"""Our from-scratch default: VGG-style blocks with batch norm and global pooling."""

from __future__ import annotations

import keras

from models.pooling import pool_features
from models.registry import register_backbone


@register_backbone("style_cnn", default_size=(64, 64), min_size=16,
                   description="conv-BN-ReLU blocks, global pooling; our default")
def style_cnn(input_shape, pooling: str = "avg", weights: str | None = None,
              filters: tuple[int, ...] = (32, 64, 128, 256), convs_per_block: int = 2,
              bn_momentum: float = 0.9):
    """Blocks of `convs_per_block` 3x3 conv-BN-ReLU, 2x2 max-pool between blocks, then pooling.

    Batch-norm statistics follow the data faster than Keras's default (momentum 0.99):
    runs on a CPU have few steps per epoch, and validation uses those statistics.
    """
    inputs = keras.Input(input_shape, name="image")
    x = inputs
    for block, width in enumerate(filters):
        if block:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
        for conv in range(convs_per_block):
            stem = f"block{block + 1}_conv{conv + 1}"
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=stem)(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{stem}_bn")(x)
            x = keras.layers.ReLU(name=f"{stem}_relu")(x)
    model = keras.Model(inputs, pool_features(x, pooling), name="style_cnn")
    if weights:
        model.load_weights(weights)
    return model
