"""Our from-scratch default: VGG-style blocks with batch norm and global pooling."""

from __future__ import annotations

from models.registry import register_backbone

DEFAULT_FILTERS = (32, 64, 128, 256)


def check_style_cnn(filters: tuple[int, ...] = DEFAULT_FILTERS, gram_blocks: tuple[int, ...] = (),
                    **_) -> None:
    bad = [b for b in gram_blocks if not 1 <= b <= len(filters)]
    if bad:
        raise ValueError(f"gram_blocks {bad[0]} is not a block of style_cnn (1 to {len(filters)})")


@register_backbone("style_cnn", default_size=(64, 64), min_size=16,
                   description="conv-BN-ReLU blocks, global pooling; our default", check=check_style_cnn)
def style_cnn(input_shape, pooling: str = "avg", weights: str | None = None,
              filters: tuple[int, ...] = DEFAULT_FILTERS, convs_per_block: int = 2,
              bn_momentum: float = 0.9, gram_blocks: tuple[int, ...] = ()):
    """Blocks of `convs_per_block` 3x3 conv-BN-ReLU, 2x2 max-pool between blocks, then pooling.

    `gram_blocks` (1-based) adds the Gram matrix of those blocks' outputs to the features,
    as style transfer does: early blocks see strokes, shading and edges at full resolution,
    where the last block's few positions make a poor texture statistic.

    Batch-norm statistics follow the data faster than Keras's default (momentum 0.99):
    runs on a CPU have few steps per epoch, and validation uses those statistics.
    """
    import keras

    from models.pooling import pool_features

    inputs = keras.Input(input_shape, name="image")
    x = inputs
    styles = []
    for block, width in enumerate(filters):
        if block:
            x = keras.layers.MaxPooling2D(name=f"block{block}_pool")(x)
        for conv in range(convs_per_block):
            stem = f"block{block + 1}_conv{conv + 1}"
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=stem)(x)
            x = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"{stem}_bn")(x)
            x = keras.layers.ReLU(name=f"{stem}_relu")(x)
        if block + 1 in gram_blocks:
            styles.append(pool_features(x, "gram", name=f"block{block + 1}_style"))
    features = pool_features(x, pooling)
    if styles:
        features = keras.layers.Concatenate(name="style_concat")([*styles, features])
    model = keras.Model(inputs, features, name="style_cnn")
    if weights:
        model.load_weights(weights)
    return model
