"""Ways to turn a backbone's last feature maps into one vector per image."""

from __future__ import annotations

import keras

from models.gram_pooling import GramPooling

POOLINGS = ("avg", "max", "avgmax", "gram", "gram+avg")

# Channels kept before the Gram matrix: C*(C+1)/2 features grow fast.
GRAM_CHANNELS = 32


def pool_features(maps, pooling: str, name: str = "pool"):
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    parts = []
    if pooling in ("avg", "avgmax", "gram+avg"):
        parts.append(keras.layers.GlobalAveragePooling2D(name=f"{name}_avg")(maps))
    if pooling in ("max", "avgmax"):
        parts.append(keras.layers.GlobalMaxPooling2D(name=f"{name}_max")(maps))
    if pooling in ("gram", "gram+avg"):
        reduced = keras.layers.Conv2D(GRAM_CHANNELS, 1, name=f"{name}_gram_reduce")(maps)
        parts.append(GramPooling(name=f"{name}_gram")(reduced))
    if len(parts) == 1:
        return parts[0]
    return keras.layers.Concatenate(name=f"{name}_concat")(parts)
