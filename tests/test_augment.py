"""The balanced augmented stream: exact counts, determinism, flat memory, corrupt files skipped."""

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from datasets.augment import AUGMENTATIONS, N_PARAMS, augment_batch, make_augmenter  # noqa: E402
from datasets.config import AugmentConfig, BalanceConfig  # noqa: E402
from datasets.materialize import materialize, read_materialized  # noqa: E402
from datasets.pipeline import BalancedStream  # noqa: E402
from datasets.sampling import LabelledImages  # noqa: E402
from tests.imagegen import style_image  # noqa: E402

OFF = {"flip": "none", "rotation_degrees": 0.0, "zoom": 0.0, "translation": 0.0, "brightness": 0.0,
       "contrast": 0.0, "hue": 0.0, "saturation": 0.0}
ONLY = {
    "flip": {"flip": "both"},
    "rotate": {"rotation_degrees": 20.0},
    "zoom": {"zoom": 0.3},
    "translate": {"translation": 0.2},
    "pixel_shift": {"pixel_shift": 3},
    "brightness": {"brightness": 0.3},
    "contrast": {"contrast": 0.5},
    "hue": {"hue": 0.2},
    "saturation": {"saturation": 0.5},
}


def batch(n=6, size=16, seed=0):
    rng = np.random.default_rng(seed)
    images = np.stack([np.asarray(style_image(i % 3, i, size)) for i in range(n)])
    return tf.constant(images), tf.constant(rng.random((n, N_PARAMS), dtype=np.float32))


def test_every_registered_augmentation_is_covered():
    assert set(ONLY) == set(AUGMENTATIONS)


@pytest.mark.parametrize("name", sorted(ONLY))
def test_augmentation_is_the_same_eagerly_and_in_dataset_map(name):
    config = AugmentConfig(**{**OFF, **ONLY[name]})
    augmenter = make_augmenter(config)
    images, params = batch()
    eager = augmenter(images, params).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors((images, params)).map(augmenter))).numpy()
    plain = augment_batch(images, params, config).numpy()  # op by op, no XLA
    np.testing.assert_array_equal(eager, mapped)
    np.testing.assert_allclose(plain, eager, atol=1e-4)
    untouched = images.numpy() / 255.0
    assert np.abs(eager - untouched).max() > 0.05, f"{name} changed nothing"


def test_neutral_draws_leave_the_image_alone_and_flip_mirrors_exactly():
    images, _ = batch()
    neutral = tf.fill([6, N_PARAMS], 0.5)
    out = make_augmenter(AugmentConfig())(images, neutral).numpy()
    np.testing.assert_allclose(out, images.numpy() / 255.0, atol=1e-5)
    flipped = make_augmenter(AugmentConfig(**{**OFF, "flip": "horizontal"}))(
        images, tf.zeros([6, N_PARAMS])).numpy()
    np.testing.assert_allclose(flipped, images.numpy()[:, :, ::-1] / 255.0, atol=1e-5)


def test_pixel_shift_copies_whole_pixels_exactly():
    images, params = batch()
    shifted = make_augmenter(AugmentConfig(**{**OFF, "pixel_shift": 2}))(images, params).numpy()
    source = images.numpy() / 255.0
    for out, original in zip(shifted, source, strict=True):
        matches = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                   if np.allclose(out[2:-2, 2:-2], original[2 - dy:14 - dy, 2 - dx:14 - dx], atol=1e-6)]
        assert len(matches) == 1, "not an exact whole-pixel shift"
    with pytest.raises(ValueError, match="translation or pixel_shift"):
        AugmentConfig(translation=0.1, pixel_shift=2)


def make_images(folder: Path, counts: dict[str, int], size=16) -> LabelledImages:
    paths, labels = [], []
    for a, (label, n) in enumerate(counts.items()):
        for i in range(n):
            path = folder / f"{label}_{i}.png"
            style_image(a, i, size).save(path)
            paths.append(path)
            labels.append((label,))
    return LabelledImages(tuple(paths), tuple(labels), "author")


def stream(tmp_path, data, **config) -> BalancedStream:
    settings = {"image_size": (16, 16), "batch_size": 32, "per_label": 64, **config}
    return BalancedStream(data, BalanceConfig(**settings), cache_dir=tmp_path / "cache", progress=False)


def epoch_targets(s: BalancedStream, epochs=1) -> Counter:
    return Counter(int(t) for _, targets, _ in s.dataset(epochs) for t in targets.numpy())


def test_counts_are_exact_under_a_1_to_50_imbalance(tmp_path):
    data = make_images(tmp_path, {"rare": 2, "common": 100})
    s = stream(tmp_path, data, per_label=100)
    assert epoch_targets(s) == {0: 100, 1: 100}  # labels sorted: common=0, rare=1
    assert s.achieved_counts(0) == {"common": 100, "rare": 100}
    assert s.steps_per_epoch == 7


def test_runs_are_deterministic_for_a_seed(tmp_path):
    data = make_images(tmp_path, {"a": 5, "b": 9})

    def first_batches(seed):
        return [x.numpy() for x, _, _ in stream(tmp_path, data, seed=seed).dataset(2).take(5)]

    one, again, other = first_batches(1), first_batches(1), first_batches(2)
    assert all(np.array_equal(x, y) for x, y in zip(one, again, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(one, other, strict=True))
    resumed = [x.numpy() for x, _, _ in stream(tmp_path, data, seed=1).dataset(2, start_epoch=1)]
    whole = [x.numpy() for x, _, _ in stream(tmp_path, data, seed=1).dataset(2)]
    assert all(np.array_equal(x, y) for x, y in zip(resumed, whole[-len(resumed):], strict=True))


def test_memory_does_not_grow_across_epochs(tmp_path):
    data = make_images(tmp_path, {"a": 20, "b": 40}, size=32)
    s = stream(tmp_path, data, image_size=(32, 32), per_label=512)
    iterator = iter(s.dataset(12))
    per_epoch = s.steps_per_epoch
    readings = []
    for step, _ in enumerate(iterator, start=1):
        if step % per_epoch == 0:
            readings.append(_rss_mb())
    assert len(readings) == 12
    assert readings[-1] - readings[2] < 40, readings


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def test_corrupt_image_is_skipped_with_a_warning(tmp_path, caplog):
    data = make_images(tmp_path, {"a": 3, "b": 3})
    data.paths[1].write_bytes(data.paths[1].read_bytes()[:40])  # truncated
    with caplog.at_level(logging.WARNING):
        s = stream(tmp_path, data, per_label=50)
    assert "skipped corrupt image" in caplog.text and data.paths[1].name in caplog.text
    assert epoch_targets(s) == {0: 50, 1: 50}
    assert 1 not in set(s.plan(0).image_index.tolist())


def test_genres_draw_each_image_by_its_rarest_genre(tmp_path):
    paths, labels = [], []
    for i, genres in enumerate([("action",), ("action",), ("action", "drama"), ("action", "comedy"),
                                ("comedy",), ("comedy",)]):
        path = tmp_path / f"{i}.png"
        style_image(i, i, 16).save(path)
        paths.append(path)
        labels.append(genres)
    data = LabelledImages(tuple(paths), tuple(labels), "genres")
    s = stream(tmp_path, data, label="genres", per_label=300)
    counts = s.achieved_counts(0)
    assert counts["drama"] == 300  # the rarest genre hits its target exactly
    assert counts["comedy"] >= 300 and counts["action"] >= 300
    _, targets, _ = next(iter(s.dataset(1)))
    assert targets.shape[1] == 3 and set(np.unique(targets.numpy())) <= {0.0, 1.0}


def test_class_weight_strategy_weights_each_label_equally(tmp_path):
    data = make_images(tmp_path, {"rare": 2, "common": 8})
    s = stream(tmp_path, data, strategy="class_weight")
    counts = s.achieved_counts(0)
    assert s.sampler.epoch_size == 10
    assert counts["rare"] == pytest.approx(counts["common"]) == pytest.approx(5.0)
    weights = Counter()
    for _, targets, w in s.dataset(1):
        for t, v in zip(targets.numpy(), w.numpy(), strict=True):
            weights[int(t)] += float(v)
    assert weights[0] == pytest.approx(weights[1])


def test_materialize_writes_shards_that_read_back(tmp_path):
    data = make_images(tmp_path, {"a": 3, "b": 7})
    s = stream(tmp_path, data, per_label=40)
    meta = materialize(s, tmp_path / "out", epochs=2, shards=3, progress=False)
    assert meta["count"] == 160 and len(list((tmp_path / "out").glob("*.tfrecord"))) == 3
    dataset, read_meta = read_materialized(tmp_path / "out", batch_size=16)
    seen = Counter(int(t) for _, targets, _ in dataset for t in targets.numpy())
    assert seen == {0: 80, 1: 80} and read_meta["label_names"] == ["a", "b"]
    first = next(iter(dataset))[0].numpy()
    assert first.shape == (16, 16, 16, 3) and first.min() >= 0.0 and first.max() <= 1.0
    with pytest.raises(ValueError, match="already exists"):
        materialize(s, tmp_path / "out", progress=False)
    assert not list(tmp_path.glob("out.tmp-*"))


def test_augment_cli_reports_exact_counts(tmp_path, cli):
    src = tmp_path / "src"
    for a, n in (("rare", 2), ("common", 12)):
        folder = src / a / f"{a}-title"
        folder.mkdir(parents=True)
        for i in range(n):
            style_image(len(a), i, 24).save(folder / f"{i}.png")
    catalog = str(tmp_path / "c.sqlite")
    cli("datasets", "import", str(src), "--catalog", catalog, "--quiet", check_exit=0)
    cli("datasets", "split", "--catalog", catalog, "--by", "image", "--fractions", "1,0,0",
        "--min-images", "1", check_exit=0)
    result = cli("datasets", "augment", "--catalog", catalog, "--per-label", "30", "--size", "16x16",
                 "--json", "--materialize", str(tmp_path / "mat"), check_exit=0)
    report = json.loads(result.stdout)
    assert report["achieved_counts"] == {"common": 30, "rare": 30}
    assert report["materialized"]["count"] == 60
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr
    bad = cli("datasets", "augment", "--catalog", catalog, "--split", "test")
    assert bad.returncode == 2 and "split 'test' is empty" in bad.stderr
