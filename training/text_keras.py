"""The Keras variant of the text genre model: sparse TF-IDF rows into one dense sigmoid layer.

Trained with binary cross-entropy, or the seed study's focal loss (`model.focal_gamma` > 0),
with each genre's positives weighted by negatives/positives as the linear model's balanced
class weights do. One dense layer on the same features is still a linear model, so it exports
to the same numbers (kernel, bias) and the query path does not change. It ships only where it
measures at least 0.95x the linear model's macro mAP (benchmarks/text_genres.py runs both).
"""

from __future__ import annotations

import numpy as np

from training.text_config import TextModelConfig

BATCH = 64


def _batches(x, y: np.ndarray, order: np.ndarray):
    import tensorflow as tf

    for start in range(0, len(order), BATCH):
        rows = order[start : start + BATCH]
        part = x[rows].tocoo()
        yield (
            tf.sparse.reorder(
                tf.SparseTensor(
                    np.stack([part.row, part.col], 1).astype(np.int64),
                    part.data.astype(np.float32),
                    part.shape,
                )
            ),
            y[rows].astype(np.float32),
        )


def fit_dense_sigmoid(
    x, y: np.ndarray, cfg: TextModelConfig, progress: bool = False, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(kernel [features, genres], bias [genres]) of a Dense(sigmoid) layer fitted on CSR `x`."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    positives = np.clip(y.sum(axis=0), 1, None)
    pos_weight = (
        ((len(y) - positives) / positives).astype(np.float32)
        if cfg.class_weight
        else np.ones(y.shape[1], np.float32)
    )
    inputs = keras.Input(shape=(x.shape[1],), sparse=True)
    layer = keras.layers.Dense(
        y.shape[1], activation="sigmoid", kernel_regularizer=keras.regularizers.L2(1.0 / (cfg.c * len(y)))
    )
    model = keras.Model(inputs, layer(inputs))
    weights = tf.constant(pos_weight)

    def loss(truth, predicted):
        predicted = tf.clip_by_value(predicted, 1e-7, 1 - 1e-7)
        gamma = cfg.focal_gamma
        positive = -truth * weights * tf.pow(1 - predicted, gamma) * tf.math.log(predicted)
        negative = -(1 - truth) * tf.pow(predicted, gamma) * tf.math.log(1 - predicted)
        return tf.reduce_mean(positive + negative, axis=-1)

    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss)
    rng = np.random.default_rng(seed)
    signature = (
        tf.SparseTensorSpec([None, x.shape[1]], tf.float32),
        tf.TensorSpec([None, y.shape[1]], tf.float32),
    )
    # The generator is called again each epoch: a new order every time.
    data = tf.data.Dataset.from_generator(
        lambda: _batches(x, y, rng.permutation(len(y))), output_signature=signature
    ).repeat()
    model.fit(
        data,
        epochs=cfg.epochs,
        steps_per_epoch=-(-len(y) // BATCH),
        shuffle=False,
        verbose=1 if progress else 0,
    )
    kernel, bias = layer.get_weights()
    # The exported model applies a sigmoid to x @ kernel + bias, as this layer did.
    return kernel.astype(np.float32), bias.astype(np.float32)
