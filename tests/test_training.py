"""Training end to end on tiny data: the run folder, the bundle, evaluation, resume, bad configs."""

import csv
import json
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from inference.bundle import Bundle
from tests.conftest import GENRES, REPO, train_cli, write_manifests
from tests.imagegen import style_image
from training.config import load_config
from training.metrics import author_metrics, genre_metrics, ranking_metrics, tune_thresholds


def test_run_folder_and_bundle(tiny_run):
    folder, _, result = tiny_run
    run = folder / "runs" / "t"
    for name in ("config.yaml", "best.keras", "last.keras", "history.csv", "curves.png", "state.json"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").rglob("*")), "no TensorBoard logs"
    assert "img/s" in result.stderr and "epoch 2/2" in result.stderr
    assert "genre_loss: focal" in (run / "config.yaml").read_text()
    bundle = Bundle.load(run / "bundle")
    assert bundle.authors == ["author0", "author1", "author2"]
    assert bundle.genres == sorted(GENRES) and len(bundle.genre_thresholds) == 3
    assert len(bundle.titles) == 6 and bundle.title_embeddings.shape == (6, 16)
    assert np.allclose(np.linalg.norm(bundle.title_embeddings, axis=1), 1, atol=1e-5)
    for title in bundle.titles:
        assert 3 <= len(title.thumbnails) <= 5 and all((bundle.path / t).is_file() for t in title.thumbnails)
    for name in ("model.keras", "model.tflite", "MODEL_CARD.md", "metrics.json", "config.yaml"):
        assert (bundle.path / name).is_file(), name
    assert json.loads((bundle.path / "metrics.json").read_text())["tflite_min_cosine"] >= 0.999
    assert "prior" in (bundle.path / "MODEL_CARD.md").read_text()


def test_evaluate_cli_json(tiny_run):
    folder, paths, _ = tiny_run
    bundle = str(folder / "runs" / "t" / "bundle")
    result = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle", bundle, "--manifest",
                             str(paths["test"]), "--json", "--out", str(folder / "eval")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout)
    for key in ("author_top1", "author_top3", "author_macro_f1", "prior_author_top1", "genre_micro_f1",
                "genre_map", "author_titles_hit1", "author_titles_hit10", "author_titles_mrr"):
        assert key in metrics, key
    assert metrics["title_unseen_images"] == 24 and metrics["prior_author_top1"] == pytest.approx(1 / 3)
    assert (folder / "eval" / "confusion.png").is_file()
    text = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle",
                           str(folder / "runs" / "t" / "bundle"), "--manifest", str(paths["test"])],
                          cwd=REPO, capture_output=True, text=True, timeout=300).stdout
    assert "author_top1" in text and "(prior 0.333)" in text


def test_evaluate_rejects_a_missing_bundle(tmp_path):
    result = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle", str(tmp_path / "none"),
                             "--manifest", str(tmp_path / "x.csv")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'none'}: no such bundle folder"


def test_resume_after_kill_continues_at_the_right_epoch(tmp_path):
    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=8)
    args = ["--preset", "tiny", "--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]),
            "--out-dir", str(tmp_path / "runs"), "--name", "r", "--quiet", "--epochs", "6",
            "--set", "balance.per_label=600", "--set", "train.early_stopping_patience=50",
            "--set", "train.checkpoint_seconds=0"]
    victim = subprocess.Popen([sys.executable, "-m", "training.train", *args], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = tmp_path / "runs" / "r" / "state.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text())["epochs_done"] >= 2:
            break
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done = json.loads(state_file.read_text())["epochs_done"]
    assert 2 <= done < 6, "the run ended before it could be killed"
    resumed = train_cli(*args, "--resume")
    assert f"resuming after epoch {done}" in resumed.stderr
    # --quiet: TensorFlow's C++ notices (I/W/E0000 ...) are held back during training too
    assert not re.search(r"^[IWEF]\d{4} ", resumed.stderr, re.MULTILINE), resumed.stderr
    assert f"epoch {done + 1}/6" in resumed.stderr and f"epoch {done}/6" not in resumed.stderr
    assert json.loads(state_file.read_text())["epochs_done"] == 6
    with open(tmp_path / "runs" / "r" / "history.csv", newline="") as f:
        assert {int(r["epoch"]) for r in csv.DictReader(f)} == set(range(6))


def test_numbers_yaml_reads_as_text_are_taken_as_numbers():
    # YAML 1.1 reads 3e-4 (no dot) as a string; it used to reach the optimizer as one.
    config = load_config("tiny", overrides=["train.learning_rate=3e-4", "train.epochs=2"])
    assert config.train.learning_rate == 3e-4 and isinstance(config.train.learning_rate, float)


def test_same_seed_same_history(tmp_path):
    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=6)
    histories = []
    for name in ("a", "b"):
        train_cli("--preset", "tiny", "--manifest", str(paths["train"]), "--out-dir", str(tmp_path / "runs"),
                  "--name", name, "--quiet")
        histories.append((tmp_path / "runs" / name / "history.csv").read_text())
    assert histories[0] == histories[1]


@pytest.mark.parametrize(("flags", "message"), [
    (["--backbone", "vgg99"], "unknown backbone 'vgg99'"),
    (["--set", "model.image_size=[8, 8]"], "image size 8x8 is too small for style_cnn"),
    (["--set", "train.epochz=3"], "unknown config key train.epochz"),
    (["--catalog", "MISSING"], "MISSING: no such catalog"),
    (["--set", "model.title_margin=1.5"], "model.title_margin must be in [0, 1)"),
    (["--set", "model.descriptor_temperature=0"], "model.descriptor_temperature must be positive"),
    (["--set", "augment.pixel_shift=-1"], "pixel_shift must not be negative"),
    (["--set", "model.backbone_options.filterz=[8]"], "style_cnn has no option 'filterz'"),
    (["--set", "model.backbone_options.gram_blocks=[9]"], "gram_blocks 9 is not a block of style_cnn"),
    (["--set", "train.learning_rate=fast"], "config key train.learning_rate must be a number, got 'fast'"),
    (["--set", "balance.per_label=2.5"], "config key balance.per_label must be a whole number, got 2.5"),
    (["--set", "train.refit_with_val=1"], "config key train.refit_with_val must be true or false, got 1"),
    (["--set", "model.descriptor_before_relu=maybe"],
     "config key model.descriptor_before_relu must be true or false, got 'maybe'"),
    (["--set", "balance.image_size=abc"], "config key balance.image_size must be a list of 2 items"),
    (["--set", "model.image_size=[64, x]"], "config key model.image_size[1] must be a whole number, got 'x'"),
])
def test_bad_configs_fail_with_one_line(tmp_path, flags, message):
    result = train_cli("--preset", "tiny", "--out-dir", str(tmp_path / "runs"), *flags, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_empty_split_fails_with_one_line(tmp_path, cli):
    folder = tmp_path / "src" / "a" / "t"
    folder.mkdir(parents=True)
    for i in range(3):
        style_image(0, i).save(folder / f"{i}.png")
    catalog = str(tmp_path / "c.sqlite")
    cli("datasets", "import", str(tmp_path / "src"), "--catalog", catalog, "--quiet", check_exit=0)
    result = train_cli("--preset", "tiny", "--catalog", catalog, "--out-dir", str(tmp_path / "runs"),
                       check=False)
    assert result.returncode == 2 and "split 'train' is empty" in result.stderr


def test_metrics_on_a_case_with_known_answers():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.5, 0.3]])
    truth = np.array([0, 2, 1, 0])
    found = author_metrics(probabilities, truth, prior=np.array([0.5, 0.3, 0.2]))
    assert found["author_top1"] == 0.5 and found["author_top3"] == 1.0
    assert found["prior_author_top1"] == 0.5  # always author 0
    ranks = ranking_metrics(np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]]), [[2], [0]], "title")
    assert ranks == {"title_hit1": 0.0, "title_hit10": 1.0, "title_mrr": pytest.approx((1 / 2 + 1 / 2) / 2)}
    scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.6]])
    labels = np.array([[1, 0], [1, 1], [0, 1]])
    thresholds = tune_thresholds(scores, labels)
    genres = genre_metrics(scores, labels, thresholds, prior=np.array([0.6, 0.4]), names=["x", "y"])
    assert genres["genre_micro_f1"] == 1.0 and genres["genre_map"] == 1.0
    assert genres["prior_genre_micro_f1"] < 1.0


def test_cosine_schedule_is_used(tmp_path):
    from models.saving import load_model

    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=6)
    train_cli("--preset", "tiny", "--manifest", str(paths["train"]), "--out-dir", str(tmp_path / "runs"),
              "--name", "c", "--quiet", "--epochs", "3", "--set", "train.lr_schedule=cosine")
    optimizer = load_model(tmp_path / "runs" / "c" / "last.keras").optimizer.get_config()
    assert optimizer["learning_rate"]["class_name"] == "CosineDecay"
    assert optimizer["learning_rate"]["config"]["decay_steps"] > 0


def test_input_wait_probe_is_logged_and_saved(tmp_path):
    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=6)
    result = train_cli("--preset", "tiny", "--manifest", str(paths["train"]), "--out-dir",
                       str(tmp_path / "runs"), "--name", "probe", "--set", "train.input_wait_probe=always",
                       "--set", "train.epochs=1")
    saved = json.loads((tmp_path / "runs" / "probe" / "input_wait.json").read_text())
    assert 0 <= saved["share"] < 1 and saved["step_ms_pipeline"] > 0 and saved["step_ms_in_memory"] > 0
    assert "input wait" in result.stderr and "of the step time" in result.stderr


def test_state_is_written_last_and_resume_drops_rows_of_unfinished_epochs(tmp_path):
    from training.callbacks import ResumeState, trim_history
    from training.config import RunConfig
    from training.trainer import _callbacks

    callbacks = _callbacks(tmp_path, "train", "val_author_accuracy", None, RunConfig(), 10, 3, resumed=None,
                           appending=False)
    assert isinstance(callbacks[-1], ResumeState)  # a kill never leaves state ahead of history
    history = tmp_path / "history.csv"
    history.write_text("epoch,loss\n0,1.0\n1,0.9\n2,0.8\n")
    trim_history(history, 2)
    assert history.read_text().splitlines() == ["epoch,loss", "0,1.0", "1,0.9"]
