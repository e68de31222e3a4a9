"""The webtoon study's network, our reference point."""

from __future__ import annotations

from models.registry import register_backbone


@register_backbone("webtoon_cnn", default_size=(21, 35), min_size=8,
                   description="the webtoon study's recipe: 2 conv layers, dropout 0.5, 35x21 input")
def webtoon_cnn(input_shape, pooling: str = "flatten", weights: str | None = None,
                dropout: float = 0.5, dense_units: int = 128):
    """Two conv + pool stages, flatten, one dense layer; `pooling` is ignored (the study flattened)."""
    import keras

    inputs = keras.Input(input_shape, name="image")
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Dropout(dropout, name="dropout1")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    model = keras.Model(inputs, x, name="webtoon_cnn")
    if weights:
        model.load_weights(weights)
    return model
