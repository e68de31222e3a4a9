"""The feature store's mechanics on real files: complete shards, the index, repair, gc, digests, plans.

The network here is a small numpy function (the per-shard function takes any encoder); the
engines with the real LiteRT encoder are in test_feature_engines.py."""

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from datasets.features.cli import main as features_cli
from datasets.features.digests import absolute_path, content_digests, file_sha256
from datasets.features.shards import encode_shard, plan_shards, slice_of
from datasets.features.store import FeatureStore, ShardContents, StoreError, read_shard, write_shard
from tests.imagegen import style_image

SIZE = (16, 16)
DIM = 6


def colour_encoder(images: np.ndarray) -> np.ndarray:
    """Mean and std of each colour channel: a deterministic stand-in network."""
    x = images.astype(np.float32) / 255.0
    return np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2))], axis=1)


def make_images(folder, count, start=0):
    paths = []
    for i in range(start, start + count):
        path = folder / f"img{i}.png"
        style_image(i % 3, i, 24).save(path)
        paths.append(path)
    return paths


def fill(store, paths, encoder="enc-test", part=None):
    """Encode what the store lacks, as the local engine does; returns the images encoded."""
    digests = content_digests(store, paths, progress=False)
    missing = store.missing(encoder, digests)
    tasks = plan_shards(encoder, [(digests[i], str(paths[i])) for i in missing], part, shard_images=4)
    for task in tasks:
        encode_shard(task, colour_encoder, SIZE, DIM, store.shard_path(encoder, task.name), batch=3)
        store.add_shard(encoder, task.name)
    return digests, sum(len(t.digests) for t in tasks)


def test_shards_are_complete_files_read_back_memory_mapped(tmp_path):
    path = tmp_path / "s.npz"
    features = np.arange(20, dtype=np.float16).reshape(4, 5)
    write_shard(path, ShardContents(np.array(list("abcd")), features, np.array([1, 1, 0, 1], bool),
                                    np.arange(4), np.array(["", "", "x.png: broken", ""])))
    back = read_shard(path)
    assert isinstance(back.features, np.memmap) and np.array_equal(back.features, features)
    assert list(back.digests) == list("abcd") and back.problems[2] == "x.png: broken"
    assert not list(tmp_path.glob(".*.tmp"))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(StoreError, match=r"s\.npz: corrupt shard"):
        read_shard(path)


def test_gather_returns_what_was_encoded_and_an_image_is_stored_once(tmp_path):
    paths = make_images(tmp_path, 10)
    (tmp_path / "copy.png").write_bytes(paths[0].read_bytes())  # same bytes, another path
    paths.append(tmp_path / "copy.png")
    with FeatureStore(tmp_path / "store") as store:
        digests, encoded = fill(store, paths)
        assert encoded == 10  # the copy is the same image
        out = np.zeros((len(paths), DIM), np.float32)
        found, usable, _, problems = store.gather("enc-test", digests, out)
        assert found.all() and usable.all() and not problems
        from datasets.images import load_resized
        expected = colour_encoder(np.stack([load_resized(p, SIZE) for p in paths]))
        np.testing.assert_allclose(out, expected, atol=2e-3)  # float16 storage
        assert out[0].tolist() == out[-1].tolist()
        assert store.stats()["encoders"]["enc-test"]["images"] == 10
        _, again = fill(store, paths)
        assert again == 0


def test_a_new_image_encodes_alone_and_a_changed_file_is_hashed_again(tmp_path):
    paths = make_images(tmp_path, 6)
    with FeatureStore(tmp_path / "store") as store:
        fill(store, paths)
        more = paths + make_images(tmp_path, 1, start=50)
        _, encoded = fill(store, more)
        assert encoded == 1
        style_image(2, 999, 24).save(paths[0])  # new content under an old path
        digests, encoded = fill(store, more)
        assert encoded == 1
        assert digests[0] == content_digests(store, [paths[0]], progress=False)[0]


@pytest.mark.parametrize("path", ["a.png", "dir/a.png", "./a.png", "dir//a.png", "dir/./a.png",
                                  "dir/../a.png", ".hidden/a.png", "dir/", "", ".", "/abs/b.png",
                                  "//abs/b.png", "/abs/./b", "/abs/../b", "/abs/b/", "é/ü.png", "a b.png"])
@pytest.mark.parametrize("root", [True, False])
def test_the_files_key_is_pathlibs_absolute_path(path, root, tmp_path, monkeypatch):
    """The files table's key is `str(Path(p).absolute())` (every store made so far has it): the fast
    form must give the same string, or each stored file would be hashed again."""
    cwd = Path("/") if root else tmp_path / "x y"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    assert absolute_path(path) == absolute_path(path, str(cwd)) == str(Path(path).absolute())


def test_digests_of_many_files_come_back_in_order_and_are_remembered(tmp_path):
    """More files than one run of the thread pool's tasks, one of them unreadable."""
    paths = [tmp_path / f"f{i:03d}.bin" for i in range(300)]
    for i, path in enumerate(paths):
        path.write_bytes(str(i).encode() * (i + 1))
    paths[77].unlink()
    with FeatureStore(tmp_path / "store") as store:
        digests = content_digests(store, paths, threads=3, progress=False)
        assert digests[77] is None
        assert digests[:77] + digests[78:] == [file_sha256(p) for p in paths[:77] + paths[78:]]
        assert store.db.execute("SELECT COUNT(*) FROM files").fetchone()[0] == 299
        assert content_digests(store, paths, threads=3, progress=False) == digests


def test_unreadable_images_are_stored_with_their_problem_and_not_retried(tmp_path):
    paths = make_images(tmp_path, 3)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with FeatureStore(tmp_path / "store") as store:
        digests, encoded = fill(store, [*paths, bad])
        assert encoded == 4
        out = np.zeros((4, DIM), np.float32)
        found, usable, _, problems = store.gather("enc-test", digests, out)
        assert found.all() and usable.tolist() == [True, True, True, False]
        assert len(problems) == 1 and "bad.png" in problems[0]
        assert fill(store, [*paths, bad])[1] == 0


def test_lanes_write_the_same_shard_as_one_encoder_and_a_failing_lane_writes_nothing(tmp_path):
    paths = make_images(tmp_path, 9)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    [task] = plan_shards("enc-test", [(f"{i:064x}", str(p)) for i, p in enumerate([*paths, bad])])
    seen = set()

    def lane(images):  # the same network, recording which thread ran it
        seen.add(threading.get_ident())
        time.sleep(0.01)  # long enough for the other lane to take the next run
        return colour_encoder(images)

    encode_shard(task, colour_encoder, SIZE, DIM, tmp_path / "one.npz", batch=3)
    encode_shard(task, [lane, lane, lane], SIZE, DIM, tmp_path / "lanes.npz", batch=1)
    one, lanes = read_shard(tmp_path / "one.npz"), read_shard(tmp_path / "lanes.npz")
    assert len(seen) > 1
    assert np.array_equal(one.features, lanes.features) and np.array_equal(one.dhash, lanes.dhash)
    assert lanes.usable.tolist() == [True] * 9 + [False] and "bad.png" in lanes.problems[-1]
    assert one.problems.tolist() == lanes.problems.tolist()

    def broken(images):
        raise RuntimeError("the network failed")

    with pytest.raises(RuntimeError, match="the network failed"):
        encode_shard(task, [lane, broken], SIZE, DIM, tmp_path / "failed.npz", batch=1)
    assert not (tmp_path / "failed.npz").exists() and not list(tmp_path.glob(".*.tmp"))

    # A file this worker cannot see is not a broken image: the shard stops, and nothing is stored.
    paths[4].unlink()
    for encoder, batch, name in ((colour_encoder, 3, "gone-one.npz"), ([lane, lane], 1, "gone-lanes.npz")):
        with pytest.raises(FileNotFoundError, match=f"cannot read {paths[4]}: the images must be on a "
                                                    "filesystem every worker sees"):
            encode_shard(task, encoder, SIZE, DIM, tmp_path / name, batch=batch)
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("n", [1, 9, 100, 513])
def test_lanes_take_every_row_once_in_runs_that_shrink_at_the_end(n):
    from datasets.features.shards import _run_lanes

    runs, lock = [], threading.Lock()

    def work(lane, rows):
        time.sleep(0.0005)
        with lock:
            runs.append(rows)

    _run_lanes(["a", "b", "c"], n, 8, work)
    assert sorted(i for rows in runs for i in rows) == list(range(n))
    ordered = sorted(runs, key=lambda rows: rows.start)
    assert max(map(len, ordered)) <= 8 and len(ordered[-1]) == 1  # no lane is left with a whole run

def test_an_orphan_shard_is_indexed_and_a_vanished_one_is_forgotten(tmp_path):
    paths = make_images(tmp_path, 8)
    root = tmp_path / "store"
    with FeatureStore(root) as store:
        digests, _ = fill(store, paths)
        names = [n for (n,) in store.db.execute("SELECT name FROM shards")]
        # As if the writer died between the rename and the index update:
        store.db.execute("DELETE FROM entries WHERE shard = ?", (names[0],))
        store.db.execute("DELETE FROM shards WHERE name = ?", (names[0],))
        store.db.commit()
        store.shard_path("enc-test", names[1]).unlink()
        store.reconcile("enc-test")
        missing = store.missing("enc-test", digests)
        assert len(missing) == 4  # only the vanished shard's images
        assert fill(store, paths)[1] == 4


def test_a_corrupt_shard_costs_only_its_images_and_a_corrupt_index_nothing(tmp_path, caplog):
    paths = make_images(tmp_path, 8)
    root = tmp_path / "store"
    with FeatureStore(root) as store:
        digests, _ = fill(store, paths)
        name = store.db.execute("SELECT name FROM shards ORDER BY name").fetchone()[0]
    shard = root / "shards" / "enc-test" / f"{name}.npz"
    shard.write_bytes(b"garbage")
    with FeatureStore(root) as store:
        out = np.zeros((8, DIM), np.float32)
        found, *_ = store.gather("enc-test", digests, out)
        assert found.sum() == 4
        assert any(f"{name}.npz: corrupt shard" in r.message for r in caplog.records)
        assert fill(store, paths)[1] == 4
    (root / "index.sqlite").write_bytes(b"this is not a database, it is a shopping list" * 100)
    caplog.clear()
    with FeatureStore(root) as store:
        assert store.missing("enc-test", digests) == []  # rebuilt from the shards
        assert any("index.sqlite: unreadable index" in r.message for r in caplog.records)
        assert store.stats()["encoders"]["enc-test"]["images"] == 8


def test_gc_keeps_what_is_referenced_and_frees_the_rest(tmp_path):
    paths = make_images(tmp_path, 12)
    with FeatureStore(tmp_path / "store") as store:
        digests, _ = fill(store, paths)
        keep = digests[:5]
        assert store.gc(keep, dry_run=True)["images_dropped"] == 7
        report = store.gc(keep)
        assert report["images_dropped"] == 7 and report["bytes_freed"] > 0
        assert store.missing("enc-test", keep) == []
        assert len(store.missing("enc-test", digests)) == 7
        out = np.zeros((5, DIM), np.float32)
        found, *_ = store.gather("enc-test", keep, out)
        assert found.all()


def test_slices_split_the_images_without_overlap():
    items = [(f"{i:064x}", f"p{i}") for i in range(0, 10_000, 7)]
    whole = {d for t in plan_shards("e", items) for d in t.digests}
    parts = [{d for t in plan_shards("e", items, (i, 3)) for d in t.digests} for i in range(3)]
    assert set().union(*parts) == whole and sum(map(len, parts)) == len(whole)
    assert all(slice_of(d, 3) == i for i, part in enumerate(parts) for d in part)
    assert [t.name for t in plan_shards("e", items)] == [t.name for t in plan_shards("e", items[::-1])]


def test_the_cli_reports_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    paths = make_images(tmp_path, 5)
    root = tmp_path / "store"
    with FeatureStore(root) as store:
        fill(store, paths)
    assert features_cli(["stats", "--store", str(root)]) == 0
    assert "5 images (5 usable)" in capsys.readouterr().out
    assert features_cli(["verify", "--store", str(root), "--json"]) == 0
    assert '"shards_dropped": []' in capsys.readouterr().out
    assert features_cli(["stats", "--store", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a feature store" in err
    assert features_cli(["gc", "--store", str(root)]) == 2
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,title,author,genres\nimg0.png,t,a,\n")
    assert features_cli(["gc", "--store", str(root), "--keep-manifest", str(manifest), "--json"]) == 0
    assert '"images_dropped": 4' in capsys.readouterr().out



def test_gc_drops_a_whole_encoder_and_a_wrong_key_drops_nothing(tmp_path, capsys):
    paths = make_images(tmp_path, 6)
    root = tmp_path / "store"
    with FeatureStore(root) as store:
        digests, _ = fill(store, paths, "enc-old")  # e.g. the key before a Pillow upgrade
        fill(store, paths)
    (root / "encoders").mkdir()
    for suffix in (".json", ".tflite"):
        (root / "encoders" / f"enc-old{suffix}").write_text("{}")
    before = sorted(p.name for p in root.rglob("*"))
    drop = ["gc", "--store", str(root), "--json", "--drop-encoder", "enc-old"]
    assert features_cli([*drop, "--dry-run"]) == 0
    assert '"images_dropped": 6' in capsys.readouterr().out
    assert features_cli([*drop, "--drop-encoder", "enc-olb"]) == 2  # a typo beside a right key
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no encoder 'enc-olb'" in err
    assert sorted(p.name for p in root.rglob("*")) == before
    assert features_cli(drop) == 0
    assert '"shards_deleted": 2' in capsys.readouterr().out
    assert not (root / "shards" / "enc-old").exists() and not list((root / "encoders").iterdir())
    assert not [p for p in root.iterdir() if p.name.startswith(".dropping")]
    with FeatureStore(root) as store:
        store.reconcile()
        assert set(store.stats()["encoders"]) == {"enc-test"}
        assert len(store.missing("enc-old", digests)) == 6 and store.missing("enc-test", digests) == []


def test_a_drop_killed_after_its_commit_is_finished_by_the_next_opening(tmp_path, caplog):
    """A kill -9 of `gc --drop-encoder` leaves the encoder whole (before the rename that commits
    the drop) or dropped: the next FeatureStore finishes what the kill left, before anyone reads."""
    paths = make_images(tmp_path, 6)
    root = tmp_path / "store"
    with FeatureStore(root) as store:
        digests, _ = fill(store, paths, "enc-old")
        fill(store, paths)
    (root / "encoders").mkdir()
    (root / "encoders" / "enc-old.json").write_text("{}")
    (root / "shards" / "enc-old").rename(root / ".dropping-enc-old")  # killed right after the commit
    with FeatureStore(root) as store:
        store.reconcile()
        assert set(store.stats()["encoders"]) == {"enc-test"}
        assert len(store.missing("enc-old", digests)) == 6 and store.missing("enc-test", digests) == []
    assert sorted(p.name for p in root.iterdir()) == ["encoders", "index.sqlite", "shards"]
    assert not list((root / "encoders").iterdir())
    assert "missing" not in caplog.text  # finished as a drop, not repaired as lost shards


def test_an_index_held_by_another_writer_waits_rather_than_failing(tmp_path):
    paths = make_images(tmp_path, 4)
    with FeatureStore(tmp_path / "store") as store:
        fill(store, paths)
    other = sqlite3.connect(tmp_path / "store" / "index.sqlite")
    other.execute("BEGIN IMMEDIATE")
    other.rollback()
    other.close()
    with FeatureStore(tmp_path / "store") as store:
        assert store.stats()["encoders"]["enc-test"]["images"] == 4
