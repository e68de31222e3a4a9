"""Callbacks of a run: a one-line epoch log with images/s, and the state that --resume reads."""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from pathlib import Path

import keras

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


class ResumeState(keras.callbacks.Callback):
    """After each epoch: the model with its optimizer in `checkpoint` (last.keras), then
    state.json, each atomically."""

    def __init__(self, run_dir: Path, phase: str, monitor: str, best: float | None,
                 checkpoint: str = LAST_MODEL):
        super().__init__()
        self.run_dir = run_dir
        self.phase = phase
        self.monitor = monitor
        self.best = best
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
        tmp = self.run_dir / (self.checkpoint + ".tmp.keras")
        self.model.save(tmp)
        os.replace(tmp, self.run_dir / self.checkpoint)
        state = {"epochs_done": epoch + 1, "phase": self.phase, "best": self.best,
                 "monitor": self.monitor, "checkpoint": self.checkpoint}
        (self.run_dir / (STATE_FILE + ".tmp")).write_text(json.dumps(state))
        os.replace(self.run_dir / (STATE_FILE + ".tmp"), self.run_dir / STATE_FILE)


def read_state(run_dir: Path) -> dict | None:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    if not (run_dir / state.get("checkpoint", LAST_MODEL)).is_file():
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
