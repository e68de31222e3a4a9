"""Building and compiling the task model, and the targets each of its outputs is trained on."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from models.cosine_margin_loss import CosineMarginLoss
from models.registry import BackboneSpec, create_backbone
from models.style_model import StyleModel
from models.supervised_contrastive_loss import SupervisedContrastiveLoss
from training.config import ModelConfig
from training.data import Vocabulary
from training.fused_adamw import FusedAdamW

# Outputs inference reads. A model with an author mixture serves it as "author".
SERVING_OUTPUTS = ("author", "genres", "embedding", "descriptor")


def build_backbone(config: ModelConfig, size: tuple[int, int]) -> keras.Model:
    return create_backbone(config.backbone, input_shape=(*size, 3), pooling=config.pooling,
                           weights=config.weights, **config.backbone_options)


def build_model(config: ModelConfig, vocabulary: Vocabulary, size: tuple[int, int], spec: BackboneSpec,
                title_authors: list[int] | None = None, backbone: keras.Model | None = None) -> StyleModel:
    """`title_authors`: each title's author index, for the author mixture (None: no mixture);
    `backbone`: one built already (by `build_backbone`), else a new one."""
    backbone = backbone or build_backbone(config, size)
    num_titles = len(vocabulary.titles) if config.title_loss_weight > 0 else 0
    mixture = config.author_from_titles and num_titles and vocabulary.authors and title_authors is not None
    return StyleModel(backbone, num_authors=len(vocabulary.authors), num_genres=len(vocabulary.genres),
                      num_titles=num_titles, embedding_dim=config.embedding_dim, dropout=config.dropout,
                      title_scale=config.title_scale,
                      standardize=spec.transfer if config.standardize is None else config.standardize,
                      head_l2=config.head_l2, title_authors=title_authors if mixture else None,
                      hidden_units=config.hidden_units, bottleneck_units=config.bottleneck_units,
                      descriptor_before_relu=config.descriptor_before_relu)


def compile_model(model: keras.Model, config: ModelConfig, learning_rate, weight_decay: float,
                  jit_compile: bool) -> None:
    """Compile a StyleModel or its head model; `learning_rate` is a number or a LearningRateSchedule."""
    names = set(model.output)
    losses, weights, metrics = {}, {}, {}
    if "author" in names:
        losses["author"] = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        metrics["author"] = [keras.metrics.CategoricalAccuracy(name="accuracy"),
                             keras.metrics.TopKCategoricalAccuracy(k=3, name="top3")]
        weights["author"] = 1.0
    if "author_mixture" in names:  # trained through its parts; scored for checkpoint choice
        losses["author_mixture"] = keras.losses.CategoricalCrossentropy()
        metrics["author_mixture"] = [keras.metrics.CategoricalAccuracy(name="accuracy")]
        weights["author_mixture"] = 0.0
    if "genres" in names:
        losses["genres"] = (keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True, alpha=config.focal_alpha, gamma=config.focal_gamma)
            if config.genre_loss == "focal" else keras.losses.BinaryCrossentropy())
        metrics["genres"] = [keras.metrics.AUC(multi_label=True, name="auc")]
        weights["genres"] = 1.0
    if "title" in names:
        losses["title"] = CosineMarginLoss(config.title_scale, config.title_margin)
        weights["title"] = config.title_loss_weight
    if descriptor_titles(model, config):
        losses["descriptor"] = SupervisedContrastiveLoss(config.descriptor_temperature)
        weights["descriptor"] = config.descriptor_loss_weight
    model.compile(optimizer=FusedAdamW(learning_rate, weight_decay=weight_decay),
                  loss=losses, loss_weights=weights, metrics=metrics, jit_compile=jit_compile)


def monitored(model: keras.Model, has_val: bool) -> str:
    names = set(model.output)
    metric = ("author_mixture_accuracy" if "author_mixture" in names else
              "author_accuracy" if "author" in names else "genres_auc")
    return f"val_{metric}" if has_val else metric


def descriptor_titles(model: keras.Model, config: ModelConfig) -> bool:
    """Whether `compile_model` gives `model`'s descriptor a loss, whose targets are title indices."""
    names = set(model.output)
    return "descriptor" in names and "title" in names and config.descriptor_loss_weight > 0


def stream_targets(model: keras.Model, label: str, config: ModelConfig):
    """A tf.data map from the balanced stream's (inputs, targets, weights) to the model's targets:
    one-hot authors (label smoothing needs them), a copy for the mixture, and a placeholder for
    the embedding and descriptor outputs, which have no loss but for which Keras still expects
    targets (title indices for a descriptor compiled with a loss)."""
    names = set(model.output)
    authors = model.output["author"].shape[-1] if "author" in names else 0
    embedding_dim = model.output["embedding"].shape[-1]
    descriptor_dim = model.output["descriptor"].shape[-1] if "descriptor" in names else 0
    titles = descriptor_titles(model, config)

    def convert(inputs, targets, weights):
        if not isinstance(targets, dict):
            targets = {"author" if label == "author" else "genres": targets}
        title_targets = targets.get("title")
        targets = {k: v for k, v in targets.items() if k in names}
        if "author" in targets:
            targets["author"] = tf.one_hot(targets["author"], authors)
            if "author_mixture" in names:
                targets["author_mixture"] = targets["author"]
        targets["embedding"] = tf.zeros([tf.shape(inputs)[0], embedding_dim])
        if titles:
            targets["descriptor"] = title_targets
        elif descriptor_dim:
            targets["descriptor"] = tf.zeros([tf.shape(inputs)[0], descriptor_dim])
        return inputs, targets, weights
    return convert


def array_targets(model: keras.Model, vocabulary: Vocabulary, rows,
                  config: ModelConfig) -> dict[str, np.ndarray]:
    """The same targets as numpy arrays, for validation rows."""
    names = set(model.output)
    every = vocabulary.targets(rows)
    targets = {k: v for k, v in every.items() if k in names}
    if "title" in targets:
        # Unseen titles (a --by title split) have no class: their title loss is meaningless
        # but harmless; the monitored author figures are exact.
        targets["title"] = np.maximum(targets["title"], 0)
    if "author" in targets:
        targets["author"] = np.eye(len(vocabulary.authors), dtype=np.float32)[targets["author"]]
        if "author_mixture" in names:
            targets["author_mixture"] = targets["author"]
    for name in ("embedding", "descriptor"):
        if name in names:
            targets[name] = np.zeros((len(rows), model.output[name].shape[-1]), np.float32)
    if descriptor_titles(model, config):
        targets["descriptor"] = every["title"]  # -1 for titles without an index: only negatives
    return targets


def serving_outputs(outputs: dict) -> dict:
    """What inference reads: the mixture (where there is one) as "author", genres, embedding,
    descriptor."""
    chosen = {name: outputs[name] for name in SERVING_OUTPUTS if name in outputs}
    if "author_mixture" in outputs:
        chosen["author"] = outputs["author_mixture"]
    return chosen
