"""A two-stage bundle run with LiteRT: the feature store's encoder, then the heads.

A bundle trained on frozen features ships the store's encoder file as it is and the heads as a
second, small network (`training/export.py`). Between the two, the raw statistics are rounded
to the store's dtype: the heads were trained on stored rows, and a query through a store
(`inference/stored_outputs.py`) reads those same rows, so both paths give the same answers.
"""

from __future__ import annotations

import os

import numpy as np

from datasets.features.encoders import EncoderSpec
from inference.litert_model import LiteRTModel, ModelFileError


class TwoStageModel:
    """images float32 [n, H, W, 3] in 0-1 -> {"author", "genres", "embedding", ...}."""

    def __init__(self, spec: EncoderSpec, heads_path: str | os.PathLike, threads: int | None = None):
        self.spec = spec
        self.encoder = LiteRTModel(spec.tflite_path, threads)
        self.head_model = LiteRTModel(heads_path, threads)
        self.input_shape = self.encoder.input_shape
        takes = self.head_model.input_shape[-1]
        if takes != spec.dim:
            raise ModelFileError(f"{heads_path}: takes {takes} features, the encoder {spec.key} gives "
                                 f"{spec.dim}")

    def statistics(self, images: np.ndarray) -> np.ndarray:
        """[n, spec.dim] raw statistics, as the store keeps them (then float32)."""
        (raw,) = self.encoder(images).values()
        if raw.shape[-1] != self.spec.dim:
            raise ModelFileError(f"{self.spec.tflite_path}: gives {raw.shape[-1]} features, its description "
                                 f"says {self.spec.dim}")
        return raw.astype(self.spec.dtype).astype(np.float32)

    def heads(self, statistics: np.ndarray) -> dict[str, np.ndarray]:
        return self.head_model(np.asarray(statistics, np.float32))

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.heads(self.statistics(images))
