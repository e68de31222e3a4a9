"""Supervised contrastive loss over a batch of L2-normalised vectors (Khosla et al., 2020)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class SupervisedContrastiveLoss(keras.losses.Loss):
    """Each image against the rest of its batch: -mean log p(same-title image), where p is a softmax
    over the other images' cosines / `temperature`.

    A classifier head pulls each training title towards its own weight vector; this pulls a title's
    images towards each other and away from other titles' images, which is how enrolled titles are
    matched (nearest exemplars), so what it learns is not tied to one vector per training title.
    `y_true` holds title indices; -1 (an image whose title the run has no index for) is neither an
    anchor nor a positive, only a negative. An image with no other of its title in the batch adds 0.
    """

    def __init__(self, temperature: float = 0.1, name: str = "supervised_contrastive", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = temperature

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        vectors = ops.cast(y_pred, "float32")
        n = ops.shape(vectors)[0]
        logits = ops.matmul(vectors, ops.transpose(vectors)) / self.temperature
        others = 1.0 - ops.eye(n, dtype="float32")
        # Self-similarity leaves the softmax; a large negative, not -inf, keeps gradients finite.
        logits = logits - (1.0 - others) * 1e9
        log_p = logits - ops.logsumexp(logits, axis=1, keepdims=True)
        known = ops.cast(labels >= 0, "float32")
        positives = ops.cast(ops.equal(labels[:, None], labels[None, :]), "float32") * others
        positives = positives * known[:, None] * known[None, :]
        count = ops.sum(positives, axis=1)
        mean_log_p = ops.sum(positives * log_p, axis=1) / ops.maximum(count, 1.0)
        return -mean_log_p * ops.cast(count > 0, "float32")

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
