"""The task model: a backbone plus author, genre, embedding and title heads (keras-hub style)."""

from __future__ import annotations

import keras

from models.cosine_classifier import CosineClassifier
from models.l2_normalize import L2Normalize


@keras.saving.register_keras_serializable(package="stylefinder")
class StyleModel(keras.Model):
    """Image (float32 0-1) -> dict of outputs.

    - `author`: softmax over authors (when num_authors > 0);
    - `genres`: independent sigmoids (when num_genres > 0);
    - `embedding`: L2-normalised style vector, used for similarity search;
    - `title`: cosine logits over training titles (when num_titles > 0), trained with
      `CosineMarginLoss`; it only shapes the embedding and is dropped at export.
    """

    def __init__(self, backbone: keras.Model, num_authors: int = 0, num_genres: int = 0,
                 num_titles: int = 0, embedding_dim: int = 128, dropout: float = 0.5,
                 title_scale: float = 16.0, **kwargs):
        if not (num_authors or num_genres):
            raise ValueError("a model needs an author head, a genre head, or both")
        inputs = keras.Input(backbone.input_shape[1:], name="images")
        features = backbone(inputs)
        dropped = keras.layers.Dropout(dropout, name="head_dropout")(features)
        outputs = {}
        if num_authors:
            outputs["author"] = keras.layers.Dense(num_authors, activation="softmax", dtype="float32",
                                                   name="author")(dropped)
        if num_genres:
            outputs["genres"] = keras.layers.Dense(num_genres, activation="sigmoid", dtype="float32",
                                                   name="genres")(dropped)
        projected = keras.layers.Dense(embedding_dim, name="embedding_projection")(dropped)
        outputs["embedding"] = L2Normalize(name="embedding")(projected)
        if num_titles:
            outputs["title"] = CosineClassifier(num_titles, title_scale, name="title")(outputs["embedding"])
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.backbone = backbone
        self.num_authors = num_authors
        self.num_genres = num_genres
        self.num_titles = num_titles
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.title_scale = title_scale

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "num_authors": self.num_authors,
            "num_genres": self.num_genres,
            "num_titles": self.num_titles,
            "embedding_dim": self.embedding_dim,
            "dropout": self.dropout,
            "title_scale": self.title_scale,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)
