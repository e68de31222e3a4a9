"""Seeds, determinism, mixed precision and the distribution strategy for a run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import keras
import tensorflow as tf

from training.config import TrainConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runtime:
    gpus: int
    precision: str  # keras dtype policy name
    strategy: tf.distribute.Strategy

    def describe(self) -> str:
        where = f"{self.gpus} GPU(s)" if self.gpus else "CPU"
        return f"{where}, {self.precision}, {type(self.strategy).__name__}"


def configure(config: TrainConfig) -> Runtime:
    """Seed everything; on GPUs switch on mixed precision and MirroredStrategy."""
    keras.utils.set_random_seed(config.seed)
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        # Same seed, same numbers on the CPU (at some cost in speed).
        tf.config.experimental.enable_op_determinism()
    precision = _precision(config.mixed_precision, gpus)
    keras.mixed_precision.set_dtype_policy(precision)
    strategy = tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
    return Runtime(len(gpus), precision, strategy)


def _precision(setting: str, gpus: list) -> str:
    if setting == "off" or (setting == "auto" and not gpus):
        return "float32"
    if setting in ("float16", "bfloat16"):
        return f"mixed_{setting}"
    # bfloat16 from Ampere (compute capability 8.0) on; float16 on T4 and V100.
    details = tf.config.experimental.get_device_details(gpus[0])
    major = (details.get("compute_capability") or (0, 0))[0]
    return "mixed_bfloat16" if major >= 8 else "mixed_float16"
