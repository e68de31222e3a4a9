"""The bundle's network as a plain function: LiteRT when the bundle has its LiteRT files (model.tflite,
or an encoder and heads.tflite), Keras otherwise."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from inference.bundle import Bundle, BundleError

log = logging.getLogger(__name__)


class ModelRunner(Protocol):
    backend: str

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """float32 [n, H, W, 3] in 0-1 -> {"author"?, "genres"?, "embedding", "descriptor"?}."""


class LiteRTRunner:
    backend = "litert"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        from datasets.tf_runtime import quiet_stderr
        from inference.litert_model import LiteRTModel, ModelFileError

        # LiteRT announces its XNNPACK delegate on stderr when the first tensor is allocated.
        height, width = bundle.image_size
        try:
            with quiet_stderr():
                spec = bundle.encoder_spec()
                if spec is not None:
                    from inference.two_stage_model import TwoStageModel

                    self.model, first = TwoStageModel(spec, bundle.heads_path, threads), spec.tflite_path
                else:
                    self.model, first = LiteRTModel(bundle.tflite_path, threads), bundle.tflite_path
                if self.model.input_shape[1:] != (height, width, 3):
                    raise ModelFileError(
                        f"{bundle.path / 'bundle.json'}: image_size {[height, width]} does not match "
                        f"{first.name}'s input {list(self.model.input_shape[1:3])}")
                self.model(np.zeros((1, height, width, 3), np.float32))
        except (ModelFileError, ValueError, RuntimeError) as err:
            raise BundleError(str(err).strip().splitlines()[0]) from None

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.model(images)


class KerasRunner:
    """The slow path: imports TensorFlow and Keras (about 3 s) and runs model.keras."""

    backend = "keras"

    def __init__(self, bundle: Bundle):
        from datasets.tf_runtime import import_tensorflow

        import_tensorflow()
        from models.saving import load_model

        model = load_model(bundle.keras_path, compile=False)
        outputs = {n: model.output[n] for n in ("author", "genres", "embedding", "descriptor")
                   if n in model.output}
        import keras

        self.model = keras.Model(model.input, outputs)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        outputs = self.model.predict_on_batch(np.asarray(images, np.float32))
        return {name: np.asarray(value) for name, value in outputs.items()}


def open_runner(bundle: Bundle, backend: str = "auto") -> ModelRunner:
    """`auto` takes LiteRT when the bundle has its LiteRT files and falls back to Keras, saying so."""
    if backend not in ("auto", "litert", "keras"):
        raise ValueError(f"unknown backend {backend!r}; choose auto, litert or keras")
    has_tflite, has_keras = bundle.has_litert(), bundle.keras_path.is_file()
    if backend == "litert" or (backend == "auto" and has_tflite):
        if not has_tflite:
            raise BundleError(f"{bundle.path}: no {bundle.tflite_path.name} for the LiteRT backend")
        return LiteRTRunner(bundle)
    if not has_keras:
        raise BundleError(f"{bundle.path}: holds neither {bundle.tflite_path.name} nor "
                          f"{bundle.keras_path.name}")
    if backend == "auto":
        log.warning("%s has no %s: falling back to Keras, which imports TensorFlow and is much slower",
                    bundle.path, bundle.tflite_path.name)
    return KerasRunner(bundle)
