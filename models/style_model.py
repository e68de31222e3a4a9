"""The task model: a backbone plus author, genre, embedding and title heads (keras-hub style)."""

from __future__ import annotations

import keras
import numpy as np

from models.author_from_titles import AuthorFromTitles
from models.cosine_classifier import CosineClassifier
from models.l2_normalize import L2Normalize


@keras.saving.register_keras_serializable(package="stylefinder")
class StyleModel(keras.Model):
    """Image (float32 0-1) -> dict of outputs.

    - `author`: softmax over authors (when num_authors > 0). With `title_authors` (each
      training title's author index) it is the mean of that softmax and the title head's
      softmax summed over each author's titles: an author whose titles differ in style (a
      serif and a script family, a painted and a line-art series) is a mixture, which one
      linear boundary fits badly;
    - `genres`: independent sigmoids (when num_genres > 0);
    - `embedding`: L2-normalised style vector, used for similarity search;
    - `descriptor` (with a hidden layer or a bottleneck): the heads' widest shared
      representation (the hidden layer's activations, or with `descriptor_before_relu` its values
      before the ReLU; else the bottleneck's), with no loss of its own: it
      generalises to titles the model never saw better than the embedding, which is shaped to
      separate the training titles, so enrolled titles and authors are matched in it;
    - `title`: cosine logits over training titles (when num_titles > 0), trained with
      `CosineMarginLoss`; it shapes the embedding, and serves only through `author`.

    `standardize` puts a Normalization layer in front of the heads; its statistics are set
    from training features (`set_feature_statistics`), as scaling features before a linear
    classifier needs. `hidden_units` > 0 puts one shared ReLU layer (with dropout after it)
    between the features and the heads; `bottleneck_units` > 0 a linear projection (no bias,
    no activation) before it, which keeps a wide feature vector's first layer small: a
    low-rank factor of what would otherwise be one large matrix. `head_l2` is an L2
    penalty on the heads' kernels.
    """

    def __init__(self, backbone: keras.Model, num_authors: int = 0, num_genres: int = 0,
                 num_titles: int = 0, embedding_dim: int = 128, dropout: float = 0.5,
                 title_scale: float = 16.0, standardize: bool = False, head_l2: float = 0.0,
                 title_authors: list[int] | tuple[int, ...] | None = None, hidden_units: int = 0,
                 bottleneck_units: int = 0, descriptor_before_relu: bool = False, **kwargs):
        if not (num_authors or num_genres):
            raise ValueError("a model needs an author head, a genre head, or both")
        if title_authors is not None and (len(title_authors) != num_titles or not num_authors):
            raise ValueError("title_authors needs an author head and one author index per title")
        self.heads = _Heads(backbone.output_shape[-1], num_authors, num_genres, num_titles, embedding_dim,
                            dropout, title_scale, standardize, head_l2, title_authors, hidden_units,
                            bottleneck_units, descriptor_before_relu)
        inputs = keras.Input(backbone.input_shape[1:], name="images")
        super().__init__(inputs=inputs, outputs=self.heads(backbone(inputs)), **kwargs)
        self.backbone = backbone
        self.num_authors = num_authors
        self.num_genres = num_genres
        self.num_titles = num_titles
        self.embedding_dim = embedding_dim
        self.dropout = dropout
        self.title_scale = title_scale
        self.standardize = standardize
        self.head_l2 = head_l2
        self.title_authors = list(title_authors) if title_authors is not None else None
        self.hidden_units = hidden_units
        self.bottleneck_units = bottleneck_units
        self.descriptor_before_relu = descriptor_before_relu

    def head_model(self) -> keras.Model:
        """Features -> the same outputs, through the same head layers (weights shared): for
        training the heads on cached features while the backbone stays frozen."""
        features = keras.Input(self.backbone.output_shape[1:], name="features")
        return keras.Model(features, self.heads(features), name=f"{self.name}_heads")

    def load_head_weights(self, weights: list) -> None:
        """Weights of another head model of the same shape (a frozen-phase checkpoint)."""
        self.head_model().set_weights(weights)
        if "feature_norm" in self.heads.layers_by_name:
            self.heads.layers_by_name["feature_norm"].finalize_state()

    def set_feature_statistics(self, mean, variance, count: int) -> None:
        """Standardise features with these per-dimension statistics (of the training set)."""
        norm = self.heads.layers_by_name["feature_norm"]
        norm.set_weights([np.asarray(mean, np.float32), np.asarray(variance, np.float32),
                          np.asarray(count, np.float32)])
        norm.finalize_state()  # the layer computes with tensors made from its variables here

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
            "standardize": self.standardize,
            "head_l2": self.head_l2,
            "title_authors": self.title_authors,
            "hidden_units": self.hidden_units,
            "bottleneck_units": self.bottleneck_units,
            "descriptor_before_relu": self.descriptor_before_relu,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


class _Heads:
    """The head layers, created once and applicable to any features tensor."""

    def __init__(self, feature_dim: int, num_authors, num_genres, num_titles, embedding_dim, dropout,
                 title_scale, standardize, head_l2, title_authors, hidden_units, bottleneck_units,
                 descriptor_before_relu):
        regulariser = (lambda: keras.regularizers.L2(head_l2)) if head_l2 else (lambda: None)
        layers = {}
        if standardize:
            layers["feature_norm"] = keras.layers.Normalization(axis=-1, name="feature_norm")
            layers["feature_norm"].build((None, feature_dim))
        layers["head_dropout"] = keras.layers.Dropout(dropout, name="head_dropout")
        if bottleneck_units:
            layers["head_bottleneck"] = keras.layers.Dense(bottleneck_units, use_bias=False,
                                                           name="head_bottleneck")
        if hidden_units and descriptor_before_relu:
            # The same function as one Dense(relu), split so the descriptor can be read before the
            # ReLU: the values it zeroes still tell unseen titles apart (docs/benchmarks.md).
            layers["head_hidden"] = keras.layers.Dense(hidden_units, name="head_hidden")
            layers["hidden_relu"] = keras.layers.ReLU(name="hidden_relu")
        elif hidden_units:
            layers["head_hidden"] = keras.layers.Dense(hidden_units, activation="relu", name="head_hidden")
        if hidden_units:
            layers["hidden_dropout"] = keras.layers.Dropout(dropout, name="hidden_dropout")
        if num_authors:
            layers["author"] = keras.layers.Dense(num_authors, activation="softmax", dtype="float32",
                                                  kernel_regularizer=regulariser(), name="author")
        if num_genres:
            layers["genres"] = keras.layers.Dense(num_genres, activation="sigmoid", dtype="float32",
                                                  kernel_regularizer=regulariser(), name="genres")
        layers["embedding_projection"] = keras.layers.Dense(embedding_dim, kernel_regularizer=regulariser(),
                                                            name="embedding_projection")
        layers["embedding"] = L2Normalize(name="embedding")
        layers["descriptor"] = L2Normalize(name="descriptor")
        if num_titles:
            layers["title"] = CosineClassifier(num_titles, title_scale, name="title")
        if title_authors is not None:
            layers["author_mixture"] = AuthorFromTitles(list(title_authors), num_authors,
                                                        name="author_mixture")
        self.layers_by_name = layers

    def __call__(self, features) -> dict:
        layers = self.layers_by_name
        if "feature_norm" in layers:
            features = layers["feature_norm"](features)
        dropped = layers["head_dropout"](features)
        descriptor = None
        if "head_bottleneck" in layers:
            dropped = descriptor = layers["head_bottleneck"](dropped)
        if "head_hidden" in layers:
            descriptor = hidden = layers["head_hidden"](dropped)
            if "hidden_relu" in layers:
                hidden = layers["hidden_relu"](descriptor)
            dropped = layers["hidden_dropout"](hidden)
        outputs = {} if descriptor is None else {"descriptor": layers["descriptor"](descriptor)}
        if "author" in layers:
            outputs["author"] = layers["author"](dropped)
        if "genres" in layers:
            outputs["genres"] = layers["genres"](dropped)
        outputs["embedding"] = layers["embedding"](layers["embedding_projection"](dropped))
        if "title" in layers:
            outputs["title"] = layers["title"](outputs["embedding"])
        if "author_mixture" in layers:
            outputs["author_mixture"] = layers["author_mixture"]([outputs["author"], outputs["title"]])
        return outputs
