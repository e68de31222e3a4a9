"""One feature store serves the query paths too: `inference.similar`, `inference.report` and
`inference.enroll` with `--store` answer exactly as without it, run each image through the
model once, and repair a broken shard by encoding only what it held."""

import json
import shutil

import numpy as np
import pytest

from datasets.features.store import FeatureStore
from inference.query import DEMO_BUNDLE, StyleFinder
from inference.stored_outputs import StoredOutputs
from tests.conftest import run_cli
from tests.imagegen import style_image


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    paths = []
    for i in range(6):
        path = folder / f"q{i}.png"
        style_image(i % 3, 300 + i, 48).save(path)
        paths.append(path)
    broken = folder / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return paths, broken


def _similar(*args):
    result = run_cli("inference.similar", *map(str, args), "--json", "--top-k", "5")
    return result, json.loads(result.stdout)


def test_similar_through_a_store_answers_as_without_and_runs_each_image_once(images, tmp_path):
    paths, broken = images
    store = tmp_path / "store"
    plain, plain_doc = _similar(*paths, broken)
    first, first_doc = _similar(*paths, broken, "--store", store)
    again, again_doc = _similar(*reversed(paths), "--store", store)
    assert plain.returncode == first.returncode == 2 and again.returncode == 0
    assert first_doc == plain_doc  # float32 rows: the same scores, the same genres over thresholds
    assert again_doc["results"] == list(reversed(plain_doc["results"]))
    lines = first.stderr.strip().splitlines()
    assert len(lines) == 1 and "broken.png: truncated or corrupt" in lines[0]

    with FeatureStore(store) as opened:
        (encoder,) = opened.stats()["encoders"].values()
    assert encoder["images"] == 7 and encoder["usable"] == 6  # the broken file is stored as such

    finder = StyleFinder(DEMO_BUNDLE)
    calls = []
    encode = finder.encode
    finder.encode = lambda pixels: calls.append(len(pixels)) or encode(pixels)
    stored = StoredOutputs(finder, store, progress=False)
    outputs, problems = stored.outputs([*paths, broken])
    stored.close()
    assert calls == [1]  # the probe that reads the model's outputs; no image ran again
    assert problems[:6] == [None] * 6 and "broken.png" in problems[6]
    direct = finder.encode(np.stack([np.asarray(p) for p in _pixels(finder, paths)]))
    for name, value in direct.items():
        np.testing.assert_array_equal(outputs[name][:6], value)


def _pixels(finder, paths):
    from datasets.images import load_resized

    return [load_resized(p, finder.bundle.image_size, finder.max_pixels) for p in paths]


def test_a_broken_shard_is_one_line_and_only_its_images_run_again(images, tmp_path):
    paths, _ = images
    store = tmp_path / "store"
    _, before = _similar(*paths, "--store", store)
    (shard,) = (store / "shards").rglob("*.npz")
    shard.write_bytes(shard.read_bytes()[:200])
    result, after = _similar(*paths, "--store", store)
    assert result.returncode == 0 and after == before
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and shard.name in lines[0] and "corrupt shard" in lines[0]
    with FeatureStore(store) as opened:
        (encoder,) = opened.stats()["encoders"].values()
    assert encoder["images"] == 6 and encoder["shards"] == 1


def test_enroll_and_report_through_a_store_match_the_plain_paths(tmp_path):
    source = tmp_path / "new" / "newcomer" / "fresh title"
    source.mkdir(parents=True)
    for i in range(5):
        style_image(4, 900 + i, 48).save(source / f"ep{i}.png")
    store = tmp_path / "store"
    bundles = {}
    for kind, extra in (("plain", ()), ("stored", ("--store", str(store)))):
        bundles[kind] = tmp_path / kind
        shutil.copytree(DEMO_BUNDLE, bundles[kind])
        result = run_cli("inference.enroll", "--bundle", str(bundles[kind]), str(tmp_path / "new"), "--quiet",
                         *extra, check_exit=0)
        assert result.stdout.startswith("enrolled 5 images: 1 new titles")
    indexes = [np.load(next(b.glob("title_index-*.npz"))) for b in bundles.values()]
    assert sorted(indexes[0].files) == sorted(indexes[1].files)
    for name in indexes[0].files:
        np.testing.assert_array_equal(indexes[0][name], indexes[1][name])

    queries = [str(p) for p in sorted(source.glob("*.png"))[:2]]
    pages = []
    for kind, extra in (("plain", ()), ("stored", ("--store", str(store)))):
        out = tmp_path / f"report-{kind}"
        run_cli("inference.report", *queries, "--bundle", str(bundles["plain"]), "--out", str(out), "--quiet",
                *extra, check_exit=0)
        pages.append((out / "index.html").read_text())
    assert pages[0] == pages[1]


def test_a_store_that_is_not_a_folder_is_one_line_in_every_command(images, tmp_path):
    paths, _ = images
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("not a store")
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)
    before = (bundle / "bundle.json").read_bytes()
    source = tmp_path / "new" / "someone" / "a title"
    source.mkdir(parents=True)
    shutil.copy(paths[0], source / "ep0.png")
    commands = [("inference.similar", str(paths[0])),
                ("inference.report", str(paths[0]), "--out", str(tmp_path / "report"), "--quiet"),
                ("inference.enroll", "--bundle", str(bundle), str(tmp_path / "new"), "--quiet")]
    for command in commands:
        result = run_cli(*command, "--store", str(not_a_folder), check_exit=2)
        lines = result.stderr.strip().splitlines()
        assert lines == [f"error: {not_a_folder}: cannot be used as a feature store (File exists)"], command
    assert (bundle / "bundle.json").read_bytes() == before and not (tmp_path / "report").exists()
