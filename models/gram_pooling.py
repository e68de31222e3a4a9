"""Gram-matrix pooling: channel correlations, the texture statistic behind style transfer."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class GramPooling(keras.layers.Layer):
    """[B, H, W, C] feature maps -> [B, K*(K+1)/2] upper triangle of the channel Gram matrix.

    Entries are averaged over positions. `normalize="sqrt_l2"` then signed-square-roots and
    L2-normalises them, as in bilinear pooling, so that a few strong channels do not dominate;
    `"none"` keeps the averages, for a model that standardises its features itself (measured
    better on frozen pretrained features, see docs/benchmarks.md).

    `channels` (K < C) first projects the C channels onto K fixed directions (a
    non-trainable [C, K] matrix, `set_projection`), so the Gram of PᵀG P keeps the strongest
    correlations of a deep tap at a fraction of its C*(C+1)/2 entries. Without it K = C.
    """

    def __init__(self, epsilon: float = 1e-6, normalize: str = "sqrt_l2", channels: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        if normalize not in ("sqrt_l2", "none"):
            raise ValueError(f"GramPooling normalize must be sqrt_l2 or none, got {normalize!r}")
        if channels is not None and channels < 1:
            raise ValueError(f"GramPooling channels must be positive, got {channels}")
        self.epsilon = epsilon
        self.normalize = normalize
        self.channels = channels
        self.projection = None

    def build(self, input_shape):
        if self.channels is not None:
            if self.channels > input_shape[-1]:
                raise ValueError(f"GramPooling channels={self.channels} exceeds the {input_shape[-1]} "
                                 "input channels")
            # Until fitted: the first K channels.
            self.projection = self.add_weight(
                name="projection", shape=(input_shape[-1], self.channels), trainable=False,
                initializer=keras.initializers.Identity())

    def set_projection(self, matrix: np.ndarray) -> None:
        if self.projection is None:
            raise ValueError(f"{self.name} has no projection (channels is None)")
        self.projection.assign(np.asarray(matrix, np.float32))

    def call(self, features):
        features = ops.cast(features, "float32")  # products of activations overflow float16
        shape = ops.shape(features)
        flat = ops.reshape(features, (shape[0], shape[1] * shape[2], shape[3]))
        if self.projection is not None:
            flat = ops.matmul(flat, self.projection)
        gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat) / ops.cast(shape[1] * shape[2],
                                                                            features.dtype)
        channels = self.channels or features.shape[-1]
        rows, cols = np.triu_indices(channels)
        upper = ops.reshape(gram, (shape[0], channels * channels))
        upper = ops.take(upper, (rows * channels + cols).tolist(), axis=1)
        if self.normalize == "none":
            return upper
        signed_root = ops.sign(upper) * ops.sqrt(ops.abs(upper) + self.epsilon)
        return signed_root / (ops.norm(signed_root, axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape):
        channels = self.channels or input_shape[-1]
        return (input_shape[0], channels * (channels + 1) // 2)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "normalize": self.normalize,
                "channels": self.channels}
