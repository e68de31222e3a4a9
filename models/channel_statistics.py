"""Channel mean and standard deviation over positions: first- and second-order style statistics."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class ChannelStatistics(keras.layers.Layer):
    """[B, H, W, C] feature maps -> [B, 2C]: each channel's mean, then its standard deviation.

    These are the statistics adaptive instance normalisation transfers between images
    (Huang & Belongie 2017): a cheaper style descriptor than the Gram matrix.
    """

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def call(self, features):
        features = ops.cast(features, "float32")
        mean = ops.mean(features, axis=(1, 2))
        variance = ops.mean(ops.square(features), axis=(1, 2)) - ops.square(mean)
        return ops.concatenate([mean, ops.sqrt(ops.maximum(variance, 0.0) + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}
