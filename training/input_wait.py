"""How much of a training step waits for input: the real pipeline against a batch already in memory.

Keras runs the input pipeline inside its compiled train step, so the wait cannot be
timed from callbacks. Instead a short probe times steps fed by the real pipeline and
steps fed one batch repeated from memory; the difference is the input wait. The
probe trains for a few steps, so the model's weights are put back afterwards and the
caller compiles afresh (a new optimizer), leaving the run as if it had not happened.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import tensorflow as tf

from training.callbacks import EpochClock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputWait:
    steps: int
    step_ms_pipeline: float
    step_ms_in_memory: float

    @property
    def share(self) -> float:
        if self.step_ms_pipeline <= 0:
            return 0.0
        return max(0.0, 1.0 - self.step_ms_in_memory / self.step_ms_pipeline)

    def describe(self) -> str:
        return (f"input wait {self.share:.0%} of the step time ({self.step_ms_pipeline:.1f} ms a step with "
                f"the pipeline, {self.step_ms_in_memory:.1f} ms with a batch already in memory)")

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({**asdict(self), "share": round(self.share, 4)}, indent=2))


def _timed_steps(model: keras.Model, dataset: tf.data.Dataset, steps: int) -> float:
    """Milliseconds per step over the second of two epochs of `steps` (the first one warms up)."""
    clock = EpochClock()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[clock], shuffle=False)
    return 1000 * clock.seconds[-1] / steps


def measure_input_wait(model: keras.Model, dataset: tf.data.Dataset, steps: int = 20) -> InputWait:
    """`model` must be compiled; its weights are restored afterwards, its optimizer is not."""
    weights = model.get_weights()
    try:
        pipeline_ms = _timed_steps(model, dataset.repeat(), steps)
        batch = next(iter(dataset))
        in_memory = tf.data.Dataset.from_tensors(batch).repeat()
        memory_ms = _timed_steps(model, in_memory, steps)
    finally:
        model.set_weights(weights)
    return InputWait(steps, round(pipeline_ms, 2), round(memory_ms, 2))
