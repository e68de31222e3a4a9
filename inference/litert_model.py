"""A LiteRT model file (a bundle's model.tflite, or either of its two stages) run with numpy, without
TensorFlow."""

from __future__ import annotations

import os

import numpy as np

# Images per call of an image network: XNNPACK runs a convolutional network a quarter faster in
# twos than in batches of 16-32 on 2 cores, the activations staying in cache (the outputs are the
# same, bit for bit; docs/benchmarks.md, tenth session). Other inputs (the heads' features) go whole.
IMAGE_BATCH = 2


class ModelFileError(ValueError):
    """A model.tflite that LiteRT cannot open; str() is one line naming the file."""


class LiteRTModel:
    """images float32 [n, H, W, 3] in 0-1 -> {"author", "genres", "embedding"} arrays."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads or os.cpu_count())
            self.runner = self.interpreter.get_signature_runner()
        except (ValueError, RuntimeError) as err:  # random bytes, a cut file, no signature
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFileError(f"{path}: not a valid LiteRT model ({reason})") from None
        inputs = self.runner.get_input_details()
        if len(inputs) != 1:
            raise ModelFileError(f"{path}: expected one input, found {len(inputs)}")
        self.input_name = next(iter(inputs))
        self.input_shape = tuple(int(d) for d in inputs[self.input_name]["shape"])

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or len(images) <= IMAGE_BATCH:
            outputs = self.runner(**{self.input_name: images})
            return {name: np.asarray(value) for name, value in outputs.items()}
        parts = [self.runner(**{self.input_name: images[first:first + IMAGE_BATCH]})
                 for first in range(0, len(images), IMAGE_BATCH)]
        return {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
