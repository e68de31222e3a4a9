"""Loading saved models with every Stylefinder layer and loss registered."""

from __future__ import annotations

import os

import keras

from models.registry import list_backbones


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    list_backbones()  # the backbone modules, for any layer one of them defines at module level
    # Every Stylefinder layer a saved model may name (the backbones import theirs only when they
    # build), and the title and descriptor losses, which compiled checkpoints (last.keras, best.keras)
    # name.
    import models.author_from_titles
    import models.caffe_preprocess
    import models.channel_statistics
    import models.cosine_classifier
    import models.cosine_margin_loss
    import models.gram_pooling
    import models.l2_normalize
    import models.run_features
    import models.style_model
    import models.supervised_contrastive_loss  # noqa: F401

    return keras.saving.load_model(path, compile=compile)
