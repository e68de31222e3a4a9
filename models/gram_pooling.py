"""Gram-matrix pooling: channel correlations, the texture statistic behind style transfer."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class GramPooling(keras.layers.Layer):
    """[B, H, W, C] feature maps -> [B, C*(C+1)/2] upper triangle of the channel Gram matrix.

    Entries are averaged over positions. `normalize="sqrt_l2"` then signed-square-roots and
    L2-normalises them, as in bilinear pooling, so that a few strong channels do not dominate;
    `"none"` keeps the averages, for a model that standardises its features itself (measured
    better on frozen pretrained features, see docs/benchmarks.md).
    """

    def __init__(self, epsilon: float = 1e-6, normalize: str = "sqrt_l2", **kwargs):
        super().__init__(**kwargs)
        if normalize not in ("sqrt_l2", "none"):
            raise ValueError(f"GramPooling normalize must be sqrt_l2 or none, got {normalize!r}")
        self.epsilon = epsilon
        self.normalize = normalize

    def call(self, features):
        features = ops.cast(features, "float32")  # products of activations overflow float16
        shape = ops.shape(features)
        flat = ops.reshape(features, (shape[0], shape[1] * shape[2], shape[3]))
        gram = ops.matmul(ops.transpose(flat, (0, 2, 1)), flat) / ops.cast(shape[1] * shape[2],
                                                                            features.dtype)
        channels = features.shape[-1]
        rows, cols = zip(*[(i, j) for i in range(channels) for j in range(i, channels)], strict=True)
        upper = ops.reshape(gram, (shape[0], channels * channels))
        upper = ops.take(upper, [r * channels + c for r, c in zip(rows, cols, strict=True)], axis=1)
        if self.normalize == "none":
            return upper
        signed_root = ops.sign(upper) * ops.sqrt(ops.abs(upper) + self.epsilon)
        return signed_root / (ops.norm(signed_root, axis=-1, keepdims=True) + self.epsilon)

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (input_shape[0], channels * (channels + 1) // 2)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon, "normalize": self.normalize}
