"""Callbacks of a run: a one-line epoch log with images/s, and the state that --resume reads."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger(__name__)

STATE_FILE = "state.json"


class EpochClock(keras.callbacks.Callback):
    """Wall seconds of each epoch, appended to `seconds`."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)

LAST_MODEL = "last.keras"


class EpochTensorBoard(keras.callbacks.Callback):
    """Each epoch's figures as TensorBoard scalars (train/ and validation/, as Keras names them).

    Keras's own TensorBoard callback writes every batch's figures too, which makes fit() fetch them
    from the device after each step: about a tenth of a frozen-heads run on a 2-core CPU."""

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writers: dict = {}

    def _writer(self, name: str):
        import tensorflow as tf

        if name not in self.writers:
            self.writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        figures = dict(logs or {})
        learning_rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        if learning_rate is not None:
            figures.setdefault("learning_rate", float(keras.ops.convert_to_numpy(learning_rate)))
        for split, prefix in (("train", ""), ("validation", "val_")):
            chosen = {k[len(prefix):]: v for k, v in figures.items()
                      if k.startswith("val_") == (split == "validation")}
            if chosen:
                with self._writer(split).as_default(step=epoch):
                    for name, value in chosen.items():
                        tf.summary.scalar(f"epoch_{name}", float(value))

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


class EpochLog(keras.callbacks.Callback):
    """One line per epoch: losses, validation figures, time and images per second."""

    def __init__(self, images_per_epoch: int, epochs: int, input_wait: float | None = None):
        super().__init__()
        self.images_per_epoch = images_per_epoch
        self.epochs = epochs
        self.input_wait = input_wait

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.started
        shown = {k: v for k, v in (logs or {}).items() if k == "loss" or (k.startswith("val_")
                 and ("accuracy" in k or k == "val_loss"))}
        figures = "  ".join(f"{k} {v:.4f}" for k, v in shown.items())
        line = (f"epoch {epoch + 1}/{self.epochs}  {figures}  {seconds:.1f} s  "
                f"{self.images_per_epoch / seconds:.0f} img/s")
        if self.input_wait is not None:
            line += f"  input wait {self.input_wait:.0%} (probe)"
        log.info(line)


# What a stateful callback must carry across a resume (Keras resets them in on_train_begin).
_CALLBACK_FIELDS = {"EarlyStopping": ("wait", "best", "best_epoch"),
                    "ReduceLROnPlateau": ("wait", "best", "cooldown_counter")}


class ResumeState(keras.callbacks.Callback):
    """After an epoch, the state a resumed run needs to replay the rest bit for bit (on a
    CPU): the model with its optimizer (and so its learning-rate schedule position), the
    random states of its layers (dropout masks: Keras does not save them), and the stateful
    callbacks' counters. The epoch's checkpoint is written under a name of its own, then
    state.json (atomically: the commit point) names it as pending, then it is renamed to
    `checkpoint`; `read_state` finishes a rename that a kill interrupted. A kill at any moment
    thus leaves a checkpoint that matches state.json.

    Written once `every` seconds have passed since the last (0: every epoch), after the phase's
    last epoch, and when training is stopping (a stop asked for, early stopping): callbacks that
    stop training come before this one. A resume replays the epochs since.

    `resumed`: the state being resumed from; its callback counters are restored when training
    begins, after the callbacks' own resets (this callback runs last)."""

    def __init__(self, run_dir: Path, phase: str, monitor: str, best: float | None,
                 checkpoint: str = LAST_MODEL, resumed: dict | None = None, every: float = 0.0):
        super().__init__()
        self.every = every
        self.committed = time.monotonic()
        self.run_dir = run_dir
        self.phase = phase
        self.monitor = monitor
        self.best = best
        self.checkpoint = checkpoint
        self.resumed = resumed
        self.stateful: list[keras.callbacks.Callback] = []

    def track(self, callbacks: list[keras.callbacks.Callback]) -> ResumeState:
        self.stateful = [c for c in callbacks if type(c).__name__ in _CALLBACK_FIELDS]
        return self

    def on_train_begin(self, logs=None):
        self.committed = time.monotonic()
        saved = (self.resumed or {}).get("callbacks", {})
        for callback in self.stateful:
            for name, value in saved.get(type(callback).__name__, {}).items():
                setattr(callback, name, float(value) if isinstance(value, str) else value)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
        due = time.monotonic() - self.committed >= self.every
        if not (due or self.model.stop_training or epoch + 1 >= self.params.get("epochs", 0)):
            return
        self.committed = time.monotonic()
        for stale in self.run_dir.glob(f"{self.checkpoint}.epoch*.keras"):
            stale.unlink()  # a save that a kill cut short
        pending = f"{self.checkpoint}.epoch{epoch + 1}.keras"
        self.model.save(self.run_dir / pending)
        counters = {type(c).__name__: {name: _json_number(getattr(c, name))
                                       for name in _CALLBACK_FIELDS[type(c).__name__]}
                    for c in self.stateful}
        state = {"epochs_done": epoch + 1, "phase": self.phase, "best": self.best, "monitor": self.monitor,
                 "checkpoint": self.checkpoint, "pending": pending, "callbacks": counters,
                 "rng": rng_states(self.model)}
        (self.run_dir / (STATE_FILE + ".tmp")).write_text(json.dumps(state))
        os.replace(self.run_dir / (STATE_FILE + ".tmp"), self.run_dir / STATE_FILE)
        os.replace(self.run_dir / pending, self.run_dir / self.checkpoint)


def _json_number(value):
    if value is None:
        return None
    value = float(value)
    return str(value) if value in (np.inf, -np.inf) else value  # JSON has no infinity


def _seed_generators(model: keras.Model) -> list:
    """Every layer's seed generators, in the model's fixed layer order."""
    return [generator for layer in model._flatten_layers(include_self=True)
            for generator in getattr(layer, "_seed_generators", [])]


def rng_states(model: keras.Model) -> list[list[int]]:
    return [keras.ops.convert_to_numpy(g.state).tolist() for g in _seed_generators(model)]


def restore_rng_states(model: keras.Model, state: dict) -> None:
    """Reloaded, a layer's seed generator starts afresh (another seed, counter 0): put back
    the states of the interrupted run, so dropout draws the masks it would have drawn."""
    saved, generators = state.get("rng"), _seed_generators(model)
    if saved is None:
        log.warning("state.json has no random states: dropout will not replay the interrupted run exactly")
        return
    if len(saved) != len(generators):
        raise ValueError(f"state.json holds {len(saved)} random states for {len(generators)} generators")
    for generator, values in zip(generators, saved, strict=True):
        generator.state.assign(np.asarray(values, dtype=keras.ops.convert_to_numpy(generator.state).dtype))


def read_state(run_dir: Path) -> dict | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    checkpoint = run_dir / state.get("checkpoint", LAST_MODEL)
    pending = run_dir / state["pending"] if state.get("pending") else None
    if pending is not None and pending.is_file():  # killed between state.json and the rename
        os.replace(pending, checkpoint)
    if not checkpoint.is_file():
        return None
    return state


def trim_history(history_csv: Path, epochs_done: int) -> None:
    """Drop rows of epochs past `epochs_done`: a kill after the row but before state.json
    means the epoch runs again on resume, and its row would otherwise appear twice."""
    if not history_csv.is_file():
        return
    with open(history_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept = [r for r in rows if int(r["epoch"]) < epochs_done]
    if len(kept) == len(rows) or not fields:
        return
    tmp = history_csv.with_name(history_csv.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(kept)
    os.replace(tmp, history_csv)


def plot_curves(history_csv: Path, out: Path) -> Path | None:
    """Loss and accuracy curves from the history CSV, as one PNG."""
    from matplotlib.figure import Figure

    if not history_csv.is_file():
        return None
    with open(history_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return None
    epochs = [int(r["epoch"]) + 1 for r in rows]
    groups = {"loss": [k for k in rows[0] if k.endswith("loss")],
              "accuracy": [k for k in rows[0] if k.endswith("accuracy")]}
    fig = Figure(figsize=(11, 4), layout="constrained")
    for i, (title, keys) in enumerate(groups.items()):
        ax = fig.add_subplot(1, 2, i + 1)
        for key in keys:
            ax.plot(epochs, [_number(r[key]) for r in rows], label=key,
                    linestyle="--" if key.startswith("val_") else "-")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if keys:
            ax.legend(fontsize=7)
    fig.savefig(out, dpi=100)
    return out


def _number(text: str) -> float:
    """CSVLogger writes NA for figures that an epoch did not compute."""
    try:
        return float(text)
    except ValueError:
        return float("nan")


class StopWhenAsked(keras.callbacks.Callback):
    """Ends fit() after the epoch in which a stop was asked for (SIGINT, SIGTERM). It comes before
    ResumeState, which then commits that epoch, and `--resume` goes on from the next one."""

    def __init__(self, stop):
        super().__init__()
        self.stop = stop

    def on_epoch_end(self, epoch, logs=None):
        if self.stop.requested:
            self.model.stop_training = True
