"""A run killed at any moment and resumed ends bit-identical to an uninterrupted one (on the CPU):
the sampler position, dropout's random states, the optimizer and learning-rate state, and the
early-stopping and plateau counters all come back."""

import csv
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from tests.conftest import REPO, train_cli, write_manifests

# The tiny preset trains style_cnn from scratch with dropout 0.5, the plateau schedule and early
# stopping: every kind of state a resume must restore. Every epoch is committed (the default waits
# 30 s between commits), so that a kill can fall after a given one.
RUNS = {
    "scratch": ["--preset", "tiny", "--epochs", "5", "--set", "balance.per_label=200",
                "--set", "train.lr_patience=1", "--set", "train.early_stopping_patience=3",
                "--set", "train.checkpoint_seconds=0"],
    "frozen": ["--set", "model.image_size=[32,32]", "--set", "model.hidden_units=16",
               "--set", "model.bottleneck_units=8", "--set", "model.embedding_dim=16",
               "--set", "train.epochs=4", "--set", "balance.per_label=64", "--set", "balance.batch_size=16",
               "--set", "train.checkpoint_seconds=0"],
}


def _args(folder, paths, run: str, name: str) -> list[str]:
    return [*RUNS[run], "--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]),
            "--out-dir", str(folder / "runs"), "--name", name, "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("replay")
    return folder, write_manifests(folder, authors=3, titles=2, per_title=8)


@pytest.fixture(scope="module")
def uninterrupted(data):
    folder, paths = data
    for run in RUNS:
        train_cli(*_args(folder, paths, run, f"{run}-whole"))
    return folder


def _killed_when(args: list[str], ready) -> None:
    victim = subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None and not ready():
        time.sleep(0.002)
    assert victim.poll() is None, "the run ended before the moment it was to be killed at"
    victim.send_signal(signal.SIGKILL)
    victim.wait()


def _history(run_dir) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(("run", "moment"), [("scratch", "epoch"), ("scratch", "checkpoint"),
                                             ("scratch", "export"), ("frozen", "epoch")])
def test_a_killed_and_resumed_run_replays_the_uninterrupted_one(data, uninterrupted, run, moment):
    folder, paths = data
    name = f"{run}-{moment}"
    run_dir = folder / "runs" / name
    args = _args(folder, paths, run, name)

    def epochs_done() -> int:
        import json

        try:
            return json.loads((run_dir / "state.json").read_text())["epochs_done"]
        except (OSError, ValueError):
            return 0

    ready = {"epoch": lambda: epochs_done() >= 2,  # then killed inside the third epoch
             "checkpoint": lambda: epochs_done() >= 1 and any(run_dir.glob("*.epoch*.keras")),
             "export": lambda: (run_dir / "bundle.tmp").is_dir()}[moment]
    _killed_when(args, ready)
    train_cli(*args, "--resume")
    whole = folder / "runs" / f"{run}-whole"
    assert _history(run_dir) == _history(whole)  # losses, metrics and learning rates, every epoch
    index = "bundle/title_index.npz"
    with np.load(run_dir / index) as resumed, np.load(whole / index) as uninterrupted_index:
        np.testing.assert_array_equal(resumed["embeddings"], uninterrupted_index["embeddings"])
    assert (run_dir / "bundle" / "bundle.json").read_text().replace(name, "") == \
        (whole / "bundle" / "bundle.json").read_text().replace(f"{run}-whole", "")
