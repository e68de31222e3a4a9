"""The bundle's model.tflite run with LiteRT and numpy, without TensorFlow."""

from __future__ import annotations

import os

import numpy as np


class LiteRTModel:
    """images float32 [n, H, W, 3] in 0-1 -> {"author", "genres", "embedding"} arrays."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
        self.runner = self.interpreter.get_signature_runner()
        inputs = self.runner.get_input_details()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one input, found {len(inputs)}")
        self.input_name = next(iter(inputs))

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        outputs = self.runner(**{self.input_name: images})
        return {name: np.asarray(value) for name, value in outputs.items()}
