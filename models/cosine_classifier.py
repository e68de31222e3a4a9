"""Logits from cosine similarities to learned class centres (NormFace).

Training the embedding through it pulls each title's images around one unit
vector, which is exactly what title search by mean embedding needs.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class CosineClassifier(keras.layers.Layer):
    """Unit vectors [B, D] -> logits [B, units], `scale` times the cosine to each class centre.

    Logits rather than probabilities, so that a margin loss (`CosineMarginLoss`) can work on them.
    """

    def __init__(self, units: int, scale: float = 16.0, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.scale = scale

    def build(self, input_shape):
        self.centres = self.add_weight(name="centres", shape=(input_shape[-1], self.units),
                                       initializer="glorot_uniform")

    def call(self, embeddings):
        centres = self.centres / ops.sqrt(ops.sum(ops.square(self.centres), axis=0, keepdims=True) + 1e-12)
        return self.scale * ops.matmul(ops.cast(embeddings, "float32"), ops.cast(centres, "float32"))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "scale": self.scale}
