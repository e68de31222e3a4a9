"""Additive cosine margin (CosFace) on a cosine classifier's logits."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class CosineMarginLoss(keras.losses.Loss):
    """Sparse cross-entropy on `scale * cos` logits, with `margin` taken off the true class's cosine.

    The margin makes an image count as right only when it is closer to its own title's
    centre than to any other by at least `margin`, which tightens each title's cluster
    in the embedding (Wang et al., CosFace, 2018). `margin=0` is plain softmax
    cross-entropy on the logits.
    """

    def __init__(self, scale: float = 16.0, margin: float = 0.0, name: str = "cosine_margin", **kwargs):
        super().__init__(name=name, **kwargs)
        self.scale = scale
        self.margin = margin

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        logits = ops.cast(y_pred, "float32")
        if self.margin:
            logits = logits - self.scale * self.margin * ops.one_hot(labels, ops.shape(logits)[-1])
        # -1: an image of a title the head has no class for (a validation title when the heads
        # are refitted on training and validation images) adds no title loss.
        return keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True, ignore_class=-1)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "margin": self.margin}
