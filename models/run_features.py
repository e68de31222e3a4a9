"""A run's features from the feature store's raw statistics, as a layer: the front of a bundle's heads.

The store keeps each image's full Gram upper triangles (`training.style_encoder`); a run trains
its heads on PᵀGP of each projected tap, computed in numpy when the run's features are gathered.
This layer is the same transform inside a Keras graph, so that a bundle can ship the store's
encoder and the heads as two LiteRT files, and feed the heads what training fed them.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="stylefinder")
class RunFeatures(keras.layers.Layer):
    """[B, stored dim] -> [B, run dim]: each part of `layout` ({"name", "kind", "width",
    "channels"}, in order) passed on as it is, except the Gram parts named in `projected`
    ({name: K}), which become the upper triangle of PᵀGP for a fixed [C, K] projection P
    (`set_projections`)."""

    def __init__(self, layout: list[dict] | tuple[dict, ...], projected: dict[str, int], **kwargs):
        super().__init__(**kwargs)
        self.layout = [dict(part) for part in layout]
        self.projected = {str(name): int(k) for name, k in projected.items()}
        names = {part["name"]: part for part in self.layout}
        for name, kept in self.projected.items():
            part = names.get(name)
            if part is None or part.get("kind") != "gram":
                raise ValueError(f"RunFeatures: {name!r} is not a Gram part of the layout")
            if not 1 <= kept <= int(part["channels"]):
                raise ValueError(f"RunFeatures: {name} projects {part['channels']} channels onto {kept}")
        self.matrices: dict[str, keras.Variable] = {}

    def build(self, input_shape):
        for part in self.layout:
            if part["name"] in self.projected:
                shape = (int(part["channels"]), self.projected[part["name"]])
                self.matrices[part["name"]] = self.add_weight(name=f"{part['name']}_projection", shape=shape,
                                                              trainable=False, initializer="zeros")

    def set_projections(self, matrices: dict[str, np.ndarray]) -> None:
        for name, variable in self.matrices.items():
            variable.assign(np.asarray(matrices[name], np.float32))

    def call(self, stored):
        parts, start = [], 0
        for part in self.layout:
            width = int(part["width"])
            block = stored[:, start:start + width]
            start += width
            matrix = self.matrices.get(part["name"])
            if matrix is None:
                parts.append(block)
                continue
            channels, kept = int(part["channels"]), self.projected[part["name"]]
            gram = ops.reshape(ops.take(block, _full_from_upper(channels), axis=1), (-1, channels, channels))
            # (GP)ᵀP = PᵀGP, as G is symmetric: two plain matrix products.
            right = ops.matmul(gram, matrix)
            projected = ops.matmul(ops.transpose(right, (0, 2, 1)), matrix)
            rows, cols = np.triu_indices(kept)
            parts.append(ops.take(ops.reshape(projected, (-1, kept * kept)), (rows * kept + cols).tolist(),
                                  axis=1))
        return parts[0] if len(parts) == 1 else ops.concatenate(parts, axis=1)

    def compute_output_shape(self, input_shape):
        width = 0
        for part in self.layout:
            kept = self.projected.get(part["name"])
            width += int(part["width"]) if kept is None else kept * (kept + 1) // 2
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "layout": self.layout, "projected": self.projected}


def _full_from_upper(channels: int) -> list[int]:
    """For each entry of a C x C matrix, row by row, its place in the upper triangle's list."""
    rows, cols = np.triu_indices(channels)
    place = np.zeros((channels, channels), np.int64)
    place[rows, cols] = np.arange(len(rows))
    place[cols, rows] = np.arange(len(rows))
    return place.reshape(-1).tolist()
