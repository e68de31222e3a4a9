"""The default recognizer on tiny data: EfficientNet-Lite0 features encoded once, heads trained on them
(frozen) or the network fine-tuned after them; the feature cache; carved validation; the bundle."""

import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from datasets.features.cli import main as features_cli
from inference.bundle import Bundle
from inference.runner import KerasRunner, LiteRTRunner
from models.registry import create_backbone
from models.saving import load_model
from models.style_model import StyleModel
from tests.conftest import REPO, train_cli, write_manifests
from tests.imagegen import style_image
from training.config import ModelConfig
from training.feature_cache import encode_all
from training.trainer import _unfreeze_top
from training.weights_identity import backbone_identity

# The default configuration, shrunk to seconds: 32x32 input, small heads, few epochs.
SMALL = ["--set", "model.image_size=[32,32]", "--set", "model.hidden_units=32",
         "--set", "model.embedding_dim=16", "--set", "train.epochs=3", "--set", "balance.per_label=24",
         "--set", "balance.batch_size=16"]


@pytest.fixture(scope="module")
def frozen_run(tmp_path_factory):
    """The default run (no preset) on a train manifest alone, as a new user would start."""
    folder = tmp_path_factory.mktemp("frozen")
    paths = write_manifests(folder, authors=3, titles=2, per_title=10)
    result = train_cli("--manifest", str(paths["train"]), "--out-dir", str(folder / "runs"), "--name", "f",
                       *SMALL)
    return folder, paths, result


def test_default_run_carves_validation_trains_frozen_heads_and_exports(frozen_run):
    folder, _, result = frozen_run
    run = folder / "runs" / "f"
    assert "frozen" in result.stderr and "images carved from training" in result.stderr
    for name in ("heads_best.keras", "heads_last.keras", "refit_last.keras", "state.json", "history.csv",
                 "gram_projection.npz"):
        assert (run / name).is_file(), name
    assert not (run / "last.keras").exists()  # the backbone never trained
    metrics = json.loads((run / "bundle" / "metrics.json").read_text())
    assert metrics["validation_rule"].startswith("carved 10% of training")
    assert metrics["validation"]["images"] > 0 and "author_top1" in metrics["validation"]
    assert metrics["tflite_min_cosine"] >= 0.999
    # Two stages: the store's encoder file as the store keeps it, and the heads apart.
    (encoder,) = (run / "bundle" / "encoders").glob("*.tflite")
    store = folder / "runs" / "cache" / "store" / "encoders" / encoder.name
    assert encoder.read_bytes() == store.read_bytes()
    assert (run / "bundle" / "heads.tflite").is_file() and not (run / "bundle" / "model.tflite").exists()
    bundle = Bundle.load(run / "bundle")
    assert len(bundle.titles) == 6 and bundle.image_size == (32, 32)
    assert bundle.open_set and bundle.genre_thresholds
    assert "efficientnet_lite0" in (run / "bundle" / "MODEL_CARD.md").read_text()



def test_a_run_on_a_new_subset_encodes_nothing_and_the_cache_keeps_a_few_projected_sets(frozen_run, tmp_path,
                                                                                       capsys):
    """A retrain on a subset of stored images gathers its own projected features from the store;
    the cache folder removes projected sets no run used for long beyond the few most recent."""
    folder, paths, _ = frozen_run
    cache = folder / "runs" / "cache"
    stale = time.time() - 10 * 86400
    planted = []
    for i in range(3):  # as old retrains would have left them
        array = cache / f"run-features-stale{i}.npy"
        np.save(array, np.zeros((2, 3), np.float16))
        array.with_suffix(".json").write_text("{}")
        for path in (array, array.with_suffix(".json")):
            os.utime(path, (stale + i, stale + i))
        planted.append(array)
    with open(paths["train"], newline="") as f:
        rows = list(csv.DictReader(f))
    subset = tmp_path / "subset.csv"
    with open(subset, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows[::2])
    result = train_cli("--manifest", str(subset), "--image-root", str(folder), "--out-dir",
                       str(folder / "runs"), "--name", "subset", *SMALL, "--set", "train.epochs=1")
    assert " 0 not stored; 0 encoded" in result.stderr, result.stderr[-2000:]
    left = sorted(cache.glob("run-features-*.npy"))
    # The default run's set, the subset's and the newest planted one: the two older planted ones go.
    assert len(left) == 3 and planted[2] in left and planted[0] not in left and planted[1] not in left
    assert f"removed {planted[0]}" in result.stderr
    # What the store's stats say of them.
    assert features_cli(["stats", "--store", str(cache / "store")]) == 0
    assert f"beside it in {cache}: 3 projected-feature sets (" in capsys.readouterr().out

def test_the_refit_goes_on_from_the_frozen_heads_for_a_third_of_the_epochs(frozen_run):
    folder, _, _ = frozen_run
    run = folder / "runs" / "f"
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2, 3]  # 3 frozen epochs, then round(3 / 3)
    assert float(rows[3]["loss"]) < float(rows[0]["loss"])  # not new heads
    frozen, refit = (load_model(run / f"{stem}_last.keras", compile=False) for stem in ("heads", "refit"))
    # The standardisation is the frozen heads' (a refit from scratch recomputes it over more rows).
    for kept, went_on in zip(frozen.get_layer("feature_norm").get_weights(),
                             refit.get_layer("feature_norm").get_weights(), strict=True):
        np.testing.assert_array_equal(kept, went_on)


def test_litert_and_keras_embeddings_of_the_default_bundle_agree(frozen_run):
    folder, _, _ = frozen_run
    bundle = Bundle.load(folder / "runs" / "f" / "bundle")
    images = np.stack([np.asarray(style_image(a, 500 + a, 32), np.float32) / 255.0 for a in range(3)])
    lite, keras_outputs = LiteRTRunner(bundle)(images), KerasRunner(bundle)(images)
    assert np.min(np.sum(lite["embedding"] * keras_outputs["embedding"], axis=1)) >= 0.999
    # The hidden layer's descriptor, where enrolled authors are matched, is exported too.
    assert np.min(np.sum(lite["descriptor"] * keras_outputs["descriptor"], axis=1)) >= 0.999
    exemplars = bundle.exemplars  # every training image, in the descriptor space
    assert exemplars is not None and exemplars.output == "descriptor" and exemplars.basis.shape[0] == 32
    assert len(exemplars.vectors) == sum(t.images for t in bundle.titles)
    assert bundle.prototype_temperature > 0 and bundle.enrolled_bias == 0
    np.testing.assert_allclose(lite["author"], keras_outputs["author"], atol=1e-3)
    np.testing.assert_allclose(lite["author"].sum(axis=1), 1.0, atol=1e-4)  # the mixture is a distribution


def test_fine_tune_mode_trains_the_backbone_after_the_heads(tmp_path):
    paths = write_manifests(tmp_path, authors=2, titles=1, per_title=8)
    result = train_cli("--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]), "--out-dir",
                       str(tmp_path / "runs"), "--name", "ft", *SMALL, "--set", "train.mode=fine_tune",
                       "--set", "train.fine_tune_epochs=1", "--set", "train.epochs=1")
    run = tmp_path / "runs" / "ft"
    assert "fine_tune" in result.stderr and "epoch 2/2" in result.stderr
    assert (run / "heads_last.keras").is_file() and (run / "last.keras").is_file()
    assert json.loads((run / "state.json").read_text())["phase"] == "fine_tune"
    heads = load_model(run / "heads_last.keras", compile=False)
    tuned = load_model(run / "last.keras", compile=False)
    frozen_conv = [w for w in heads.weights if "stem_conv" in w.path]
    assert not frozen_conv  # the head model holds no backbone weights
    assert Bundle.load(run / "bundle").image_size == (32, 32)
    assert any("block" in w.path for w in tuned.trainable_weights)


def test_a_descriptor_loss_trains_the_descriptor_on_titles(tmp_path):
    """model.descriptor_loss_weight: the descriptor gets a supervised contrastive loss over titles, on
    the balanced stream (the frozen heads, then the fine-tuned model) and on validation rows."""
    paths = write_manifests(tmp_path, authors=2, titles=2, per_title=8)
    train_cli("--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]), "--out-dir",
              str(tmp_path / "runs"), "--name", "d", *SMALL, "--set", "train.mode=fine_tune",
              "--set", "train.fine_tune_epochs=1", "--set", "model.descriptor_loss_weight=0.5")
    run = tmp_path / "runs" / "d"
    with open(run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4  # 3 frozen epochs, 1 fine-tuned
    for row in rows:
        for key in ("descriptor_loss", "val_descriptor_loss"):
            assert np.isfinite(float(row[key])) and float(row[key]) > 0
    assert "descriptor_loss_weight: 0.5" in (run / "config.yaml").read_text()
    assert Bundle.load(run / "bundle").exemplars is not None


@pytest.mark.parametrize("mode", ["frozen", "fine_tune"])
def test_each_mode_trains_a_step_saves_and_reloads_identically(mode, tmp_path):
    import keras

    from training.model_setup import compile_model

    keras.utils.set_random_seed(0)
    backbone = create_backbone("efficientnet_lite0", input_shape=(32, 32, 3))
    model = StyleModel(backbone, num_authors=2, num_genres=2, num_titles=3, embedding_dim=16, dropout=0.2,
                       standardize=True, head_l2=1e-4, title_authors=[0, 1, 1], hidden_units=8)
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32, 3), dtype=np.float32)
    features = backbone.predict(images, verbose=0)
    model.set_feature_statistics(features.mean(axis=0), features.var(axis=0), len(features))
    targets = {"author": np.eye(2, dtype=np.float32)[[0, 1, 1, 0]],
               "genres": rng.integers(0, 2, (4, 2)).astype("float32"), "title": np.array([0, 1, 2, 0]),
               "embedding": np.zeros((4, 16), np.float32)}
    targets["author_mixture"] = targets["author"]
    targets["descriptor"] = np.zeros((4, model.output["descriptor"].shape[-1]), np.float32)
    before = [w.numpy().copy() for w in backbone.weights]
    if mode == "frozen":
        heads = model.head_model()
        compile_model(heads, ModelConfig(), 1e-3, 1e-4, False)
        heads.train_on_batch(features, targets)
        assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, backbone.weights, strict=True))
    else:
        _unfreeze_top(model, 20)
        compile_model(model, ModelConfig(), 1e-3, 1e-4, False)
        model.train_on_batch(images, targets)
        changed = [w.path for a, w in zip(before, backbone.weights, strict=True)
                   if not np.array_equal(a, w.numpy())]
        assert changed and not any("_bn" in name for name in changed)  # batch norm stays frozen
    model.save(tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    expected, got = model.predict(images, verbose=0), reloaded.predict(images, verbose=0)
    for key in ("author", "author_mixture", "genres", "embedding", "title", "descriptor"):
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


def test_features_are_cached_and_rebuilt_when_an_image_or_the_backbone_changes(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(5):
        paths.append(folder / f"{i}.png")
        style_image(i % 2, i, 32).save(paths[-1])
    backbone = create_backbone("efficientnet_lite0", input_shape=(32, 32, 3))
    cache = tmp_path / "cache"
    first = encode_all(paths, (32, 32), backbone, "identity-a", cache, progress=False)
    assert first.built and first.usable.all() and first.features.shape == (5, backbone.output_shape[-1])
    again = encode_all(paths, (32, 32), backbone, "identity-a", cache, progress=False)
    assert not again.built and again.path == first.path
    np.testing.assert_array_equal(again.features, first.features)
    style_image(1, 99, 32).save(paths[2])  # a changed image
    changed = encode_all(paths, (32, 32), backbone, "identity-a", cache, progress=False)
    assert changed.built and changed.path != first.path
    assert not np.array_equal(changed.features[2], first.features[2])
    np.testing.assert_array_equal(changed.features[0], first.features[0])
    other = encode_all(paths, (32, 32), backbone, "identity-b", cache, progress=False)
    assert other.built and other.path != changed.path


def test_the_backbone_identity_follows_weights_and_taps(tmp_path):
    from models.efficientnet_lite import lite_network
    from models.pretrained_weights import load_weights

    network = lite_network("lite0", (224, 224, 3), include_top=True)
    load_weights(network, "imagenet", "lite0")
    mine = tmp_path / "mine.weights.h5"
    network.get_layer("stem_conv").set_weights([network.get_layer("stem_conv").get_weights()[0] * 1.01])
    network.save_weights(mine)
    default = backbone_identity(ModelConfig(), (224, 224), 0)
    assert default == backbone_identity(ModelConfig(), (224, 224), 0)
    assert "imagenet sha256" in default
    assert backbone_identity(ModelConfig(weights=str(mine)), (224, 224), 0) != default
    fewer_taps = ModelConfig(backbone_options={"style_taps": ["group2"]})
    assert backbone_identity(fewer_taps, (224, 224), 0) != default
    assert backbone_identity(ModelConfig(), (128, 128), 0) != default


def test_enrolling_into_the_default_bundle_matches_new_authors_in_descriptor_space(frozen_run, tmp_path):
    import shutil

    from inference.enrollment import EnrollImage, enroll
    from inference.query import StyleFinder

    folder, _, _ = frozen_run
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(folder / "runs" / "f" / "bundle", bundle_dir)
    images = []
    for i in range(10):
        path = tmp_path / f"new{i}.png"
        style_image(4, 800 + i, 32).save(path)
        images.append(EnrollImage(path, "fresh title", "newcomer"))
    report = enroll(bundle_dir, images, "test", progress=False)
    assert report.added == ["fresh title"] and report.new_authors == ["newcomer"]
    bundle = Bundle.load(bundle_dir)
    assert bundle.title_embeddings.shape[0] == 7 and int((bundle.exemplars.titles == 6).sum()) == 10
    result = StyleFinder(bundle_dir).query([style_image(4, 805, 32)], k=3)[0]
    assert result.titles[0].title == "fresh title"
    assert "newcomer" in [a.name for a in result.authors]
    # Open-set "unknown author" reads the combined probability, enrolled authors included.
    assert result.open_set["author_probability"] == pytest.approx(result.authors[0].probability)


def test_a_two_stage_bundle_reads_the_rows_training_stored(frozen_run, tmp_path):
    """`--store` with the run's own store runs no image through the network again (the bundle's
    encoder is the store's), and answers exactly as the plain path; a new store gets the encoder."""
    from datasets.features.store import FeatureStore
    from tests.conftest import run_cli

    folder, paths, _ = frozen_run
    bundle, store = folder / "runs" / "f" / "bundle", folder / "runs" / "cache" / "store"
    with open(paths["train"], newline="") as f:
        images = [str(folder / row["image"]) for row in csv.DictReader(f)][:5]

    def similar(*extra):
        result = run_cli("inference.similar", "--bundle", str(bundle), *images, "--json", *extra)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def stored_images(root):
        with FeatureStore(root) as opened:
            return {key: e["images"] for key, e in opened.stats()["encoders"].items()}

    before = stored_images(store)
    plain = similar()
    assert similar("--store", str(store)) == plain
    assert stored_images(store) == before  # nothing encoded: training had stored them all
    code = ("import sys; from inference.query import find_similar; "
            f"r = find_similar({images[0]!r}, {str(bundle)!r}, k=3); "
            "print(r.backend, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.stdout.split() == ["litert", "False", "False"], result.stderr  # the query path: no TF
    assert result.stderr == ""
    fresh = tmp_path / "fresh"
    assert similar("--store", str(fresh)) == plain
    assert list(stored_images(fresh).values()) == [5]
    assert stored_images(fresh).keys() == before.keys()  # the same encoder, by key


@pytest.mark.parametrize("damage", ["heads", "encoder", "no encoder description"])
def test_a_damaged_two_stage_bundle_is_one_line_naming_the_file(frozen_run, tmp_path, damage):
    import shutil

    from tests.conftest import run_cli

    folder, _, _ = frozen_run
    bundle = tmp_path / "bundle"
    shutil.copytree(folder / "runs" / "f" / "bundle", bundle)
    (description,) = (bundle / "encoders").glob("*.json")
    target = {"heads": bundle / "heads.tflite", "encoder": description.with_suffix(".tflite"),
              "no encoder description": description}[damage]
    if damage == "no encoder description":
        target.unlink()
    else:
        target.write_bytes(b"TFL3" + bytes(100))
    result = run_cli("inference.similar", "--bundle", str(bundle), str(folder / "a0t0_0.png"))
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert str(target if damage != "no encoder description" else bundle / "encoders") in lines[0]
