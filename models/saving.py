"""Loading saved models with every Stylefinder layer and loss registered."""

from __future__ import annotations

import os

import keras

from models.registry import list_backbones


def load_model(path: str | os.PathLike, compile: bool = True) -> keras.Model:
    list_backbones()  # imports the backbone modules and so registers their custom layers
    # The title loss, which compiled checkpoints (last.keras, best.keras) name.
    import models.cosine_margin_loss
    import models.style_model  # noqa: F401

    return keras.saving.load_model(path, compile=compile)
