"""The engines around the per-shard function, with the real LiteRT encoder of a small Lite0: the same
features through local, --shard and Ray; incremental runs; kills of the encoder and of a Ray worker."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from datasets.features.digests import content_digests
from datasets.features.engines import encode_missing, parse_part
from datasets.features.store import FeatureStore
from datasets.reaper import descendants
from tests.conftest import REPO
from tests.imagegen import style_image
from training.config import ModelConfig

SIZE = (32, 32)
MODEL = ModelConfig(image_size=SIZE, backbone_options={"style_taps": ["group1", "group2", "group3"]})
SETTINGS = ["--set", "model.image_size=[32,32]", "--set", 'model.backbone_options={"style_taps": '
            '["group1", "group2", "group3"]}']


def make_images(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(start, start + count):
        path = folder / f"img{i:04d}.png"
        style_image(i % 4, i, 40).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def encoder_store(tmp_path_factory):
    """A store holding the small encoder (converted and checked once), and its spec."""
    from training.style_encoder import ensure_encoder

    root = tmp_path_factory.mktemp("store")
    images = make_images(tmp_path_factory.mktemp("check"), 4)
    with FeatureStore(root) as store:
        spec = ensure_encoder(store, MODEL, SIZE, 0, images)
    return root, spec


def copy_encoder(encoder_store, root: Path):
    """A new, empty store with the same encoder files (no second conversion)."""
    spec = encoder_store[1]
    (root / "encoders").mkdir(parents=True)
    for path in (spec.json_path, spec.tflite_path):
        (root / "encoders" / path.name).write_bytes(path.read_bytes())
    from datasets.features.encoders import EncoderSpec
    return EncoderSpec.load(root, spec.key)


def stored(root: Path, spec, paths) -> np.ndarray:
    with FeatureStore(root) as store:
        digests = content_digests(store, paths, progress=False)
        out = np.zeros((len(paths), spec.dim), np.float32)
        found, *_ = store.gather(spec.key, digests, out)
        assert found.all()
        return out


def write_manifest(path: Path, images: list[Path]) -> Path:
    lines = ["image,title,author,genres"] + [f"{p},t{i % 3},a{i % 2}," for i, p in enumerate(images)]
    path.write_text("\n".join(lines) + "\n")
    return path


def encode_cli(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "training.encode", *SETTINGS, "--quiet", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def test_the_litert_encoder_matches_keras_and_the_projection_matches_the_model(encoder_store, tmp_path):
    """PᵀGP of the stored full Gram equals the projected backbone's own output."""
    import keras

    from datasets.images import load_resized
    from models.gram_pooling import GramPooling
    from training.model_setup import build_backbone
    from training.style_encoder import run_transform

    _, spec = encoder_store
    paths = make_images(tmp_path / "img", 6)
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    with FeatureStore(root) as store:
        encode_missing(store, spec, content_digests(store, paths, progress=False), paths, progress=False)
    raw = stored(root, spec, paths)
    config = ModelConfig(image_size=SIZE, backbone_options={"style_taps": ["group1", "group2", "group3"],
                                                             "gram_channels": 16})
    backbone = build_backbone(config, SIZE)
    rng = np.random.default_rng(0)
    projections = {}
    for layer in backbone.layers:
        if isinstance(layer, GramPooling) and layer.channels:
            matrix = np.linalg.qr(rng.normal(size=(layer.input.shape[-1], layer.channels)))[0]
            layer.set_projection(matrix)
            projections[layer.name] = matrix.astype(np.float32)
    assert projections  # group3 (40 channels) is projected to 16
    images = np.stack([load_resized(p, SIZE) for p in paths]).astype(np.float32) / 255.0
    want = np.asarray(keras.ops.convert_to_numpy(backbone(images)))
    got = run_transform(spec.layout, projections)(raw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-3 * np.abs(want).max())


def test_local_shard_slices_and_ray_store_bit_identical_features(encoder_store, tmp_path):
    paths = make_images(tmp_path / "img", 24)
    results = {}
    for engine in ("local", "slices", "ray"):
        root = tmp_path / engine
        spec = copy_encoder(encoder_store, root)
        with FeatureStore(root) as store:
            digests = content_digests(store, paths, progress=False)
            if engine == "slices":
                reports = [encode_missing(store, spec, digests, paths, part=(i, 3), progress=False)
                           for i in range(3)]
                assert sum(r.images_encoded for r in reports) == 24
            else:
                report = encode_missing(store, spec, digests, paths, engine, workers=2, progress=False)
                assert report.images_encoded == 24
        results[engine] = stored(root, spec, paths)
    assert np.array_equal(results["local"], results["slices"])
    assert np.array_equal(results["local"], results["ray"])



def test_a_machine_whose_pillow_resizes_otherwise_refuses_to_write_into_the_store(encoder_store, tmp_path,
                                                                                  monkeypatch, capsys):
    """The encoder records how the machine that made it resizes; a worker whose Pillow resizes
    otherwise (Pillow 12's pass order here, as on a node not yet upgraded) stops before it stores
    a feature, with one line naming the encoder, and the store stays as it was."""
    from datasets.features.cli import main as features_cli
    from datasets.features.engines import ShardWorker
    from datasets.features.shards import plan_shards
    from datasets.features.store import StoreError
    from datasets.images import resize_fingerprint
    from tests.resize_orders import across_first_resize

    paths = make_images(tmp_path / "img", 6)
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    assert spec.identity["resize"] == resize_fingerprint(SIZE)
    with FeatureStore(root) as store:
        digests = content_digests(store, paths, progress=False)
        worker = ShardWorker(str(root), spec.key, 1)  # a Ray actor's class, run in this process
        with across_first_resize(monkeypatch):
            if resize_fingerprint(SIZE) == spec.identity["resize"]:
                pytest.skip("this Pillow resizes across first itself")
            with pytest.raises(StoreError) as refused:
                encode_missing(store, spec, digests, paths, progress=False)
            with pytest.raises(StoreError):
                worker.encode(plan_shards(spec.key, list(zip(digests, map(str, paths), strict=True)))[0])
            assert features_cli(["stats", "--store", str(root)]) == 0
            assert "ANOTHER resize than this machine's" in capsys.readouterr().out
        message = str(refused.value)
        assert message.startswith(f"{spec.json_path}: this machine resizes images differently")
        assert "\n" not in message
        assert not list(root.rglob("*.npz"))
        assert store.missing(spec.key, digests) == list(range(6))
        assert encode_missing(store, spec, digests, paths, progress=False).images_encoded == 6
    assert features_cli(["stats", "--store", str(root), "--json"]) == 0
    described = json.loads(capsys.readouterr().out)["encoders"][spec.key]
    assert described["same_resize"] is True and described["what"] == "efficientnet_lite0 at 32x32"


def test_an_encoder_made_with_another_resize_is_registered_under_a_key_of_its_own(encoder_store, tmp_path,
                                                                                  monkeypatch):
    """A two-stage bundle's encoder brought to a machine whose Pillow resizes otherwise: its rows
    there are that machine's, so they get their own key instead of the maker's."""
    from datasets.features.encoders import other_resizes
    from datasets.images import resize_fingerprint
    from tests.resize_orders import across_first_resize

    _, made_here = encoder_store
    assert made_here.registered_in(tmp_path / "same").key == made_here.key
    with across_first_resize(monkeypatch):
        if resize_fingerprint(SIZE) == made_here.identity["resize"]:
            pytest.skip("this Pillow resizes across first itself")
        there = made_here.registered_in(tmp_path / "there")
        assert there.key != made_here.key and there.ready()
        assert there.identity == {**made_here.identity, "resize": resize_fingerprint(SIZE)}
        there.check_resize()  # encodes there without complaint
        # Training there (a --shard job, say) finds the maker's encoder in a shared store and says so.
        assert other_resizes(made_here.root, there.identity) == {made_here.key: made_here.identity["resize"]}
    assert other_resizes(made_here.root, made_here.identity) == {}
    # An encoder described before encoders recorded their resize (every store made until then).
    old = {**made_here.to_json(), "key": "enc-0000000000000000"}
    old["identity"] = {k: v for k, v in made_here.identity.items() if k != "resize"}
    (tmp_path / "old" / "encoders").mkdir(parents=True)
    (tmp_path / "old" / "encoders" / "enc-0000000000000000.json").write_text(json.dumps(old))
    assert other_resizes(tmp_path / "old", made_here.identity) == {"enc-0000000000000000": None}


def test_a_ray_worker_error_reaches_the_driver_as_itself(encoder_store, tmp_path):
    """A worker that cannot read the images (they are not on a filesystem it sees) stops the run
    with its own one-line error, not Ray's wrapper naming the actor."""
    import socket

    paths = make_images(tmp_path / "img", 4)
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    with FeatureStore(root) as store:
        digests = content_digests(store, paths, progress=False)
        paths[2].unlink()  # gone between the driver's digests and the worker's reading
        with pytest.raises(FileNotFoundError) as failed:
            encode_missing(store, spec, digests, paths, "ray", workers=1, progress=False)
    assert str(failed.value).startswith(f"{socket.gethostname()} cannot read {paths[2]}")

def test_incremental_runs_encode_only_new_images(encoder_store, tmp_path):
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    paths = make_images(tmp_path / "img", 10)
    with FeatureStore(root) as store:
        first = encode_missing(store, spec, content_digests(store, paths, progress=False), paths,
                               progress=False)
        more = paths + make_images(tmp_path / "img", 2, start=100)
        second = encode_missing(store, spec, content_digests(store, more, progress=False), more,
                                progress=False)
        subset = more[3:9]
        third = encode_missing(store, spec, content_digests(store, subset, progress=False), subset,
                               progress=False)
    assert (first.images_encoded, second.images_encoded, third.images_encoded) == (10, 2, 0)


def test_encoding_into_a_store_that_holds_its_encoder_starts_no_tensorflow(encoder_store, tmp_path):
    """Only converting the encoder needs TensorFlow: a cron or array job that finds it in the store
    names it, decodes and runs LiteRT without importing TensorFlow or Keras."""
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    manifest = write_manifest(tmp_path / "m.csv", make_images(tmp_path / "img", 5))
    argv = [*SETTINGS, "--quiet", "--json", "--manifest", str(manifest), "--store", str(root)]
    probe = (f"import json, sys\nfrom training.encode import main\ncode = main({argv!r})\n"
             "loaded = sorted({'tensorflow', 'keras'} & set(sys.modules))\n"
             "print(json.dumps({'code': code, 'imported': loaded}))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report, probed = (json.loads(line) for line in done.stdout.splitlines())
    assert probed == {"code": 0, "imported": []}
    assert report["encoder"] == spec.key and report["images_encoded"] == 5


def test_a_stop_request_ends_the_encoding_between_shards_and_a_rerun_finishes(encoder_store, tmp_path):
    """What a training run's SIGINT or SIGTERM does to its encoding: the shard in progress is
    finished and stored, the next is not started, and a rerun encodes only the rest."""
    from datasets.stop_signals import Stopped, StopRequest

    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    paths = make_images(tmp_path / "img", 1100)  # shards of 512, 512 and 76
    stop = StopRequest()
    checks = []

    def check() -> None:  # asked before each shard; the stop arrives during the first
        checks.append(1)
        if len(checks) == 2:
            stop.request(signal.SIGTERM)
        stop.check()

    with FeatureStore(root) as store:
        digests = content_digests(store, paths, progress=False)
        with pytest.raises(Stopped, match="SIGTERM"):
            encode_missing(store, spec, digests, paths, progress=False, check=check)
        assert len(store.missing(spec.key, digests)) == 1100 - 512  # the first shard is stored whole
        rerun = encode_missing(store, spec, digests, paths, progress=False)
    assert rerun.images_encoded == 1100 - 512


@pytest.mark.parametrize("lanes", [1, 2])
def test_no_more_shards_are_in_flight_than_lanes(encoder_store, tmp_path, lanes):
    """What a kill -9 can lose at any moment is what is in flight: with one lane, each shard's file
    is in place and indexed before the next is started; with two lanes, one finished shard may still
    be being written while the next is encoded, never two."""
    root = tmp_path / "store"
    spec = copy_encoder(encoder_store, root)
    paths = make_images(tmp_path / "img", 1100)  # shards of 512, 512 and 76
    behind = []

    with FeatureStore(root) as store:
        digests = content_digests(store, paths, progress=False)

        def check() -> None:  # asked before each shard
            started = len(behind)
            indexed = len(set(digests)) - len(store.missing(spec.key, digests))
            on_disk = len(list((root / "shards" / spec.key).glob("*.npz")))
            behind.append(started - min(indexed // 512, on_disk))

        encode_missing(store, spec, digests, paths, progress=False, check=check, workers=lanes)
        assert not store.missing(spec.key, digests)
    assert len(behind) == 3 and max(behind) <= lanes - 1, behind


def test_a_killed_encoder_loses_at_most_its_shard_in_flight_and_a_rerun_finishes(encoder_store, tmp_path):
    """kill -9 of `python -m training.encode` mid-run, then a rerun: every image stored exactly once."""
    root = tmp_path / "store"
    copy_encoder(encoder_store, root)
    # Six shards of 512 (the last 440): a fast machine wrote all three of 1,100 images between two
    # polls once, so the run is longer and the poll quicker than a shard.
    paths = make_images(tmp_path / "img", 3000)
    manifest = write_manifest(tmp_path / "m.csv", paths)
    victim = encode_cli("--manifest", str(manifest), "--store", str(root), "--workers", "1")
    shards = root / "shards" / encoder_store[1].key
    deadline = time.time() + 240
    while time.time() < deadline and len(list(shards.glob("*.npz"))) < 1:
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    written = len(list(shards.glob("*.npz")))
    assert 1 <= written < 6, "kill the run mid-way"
    rerun = encode_cli("--manifest", str(manifest), "--store", str(root), "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert err == "", err  # --quiet: no bars, no notices (LiteRT's included), only the --json report
    report = json.loads(out)
    assert report["images_encoded"] == 3000 - 512 * written  # nothing finished is encoded again
    with FeatureStore(root) as store:
        stats = store.stats()["encoders"][encoder_store[1].key]
        rows = store.db.execute("SELECT SUM(rows) FROM shards").fetchone()[0]
    assert stats["images"] == 3000 and rows == 3000  # each image in exactly one shard


def _descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process below `pid`."""
    found = []
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            found.append((child, Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()))
    return found


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def test_a_ray_worker_killed_mid_run_does_not_stop_the_run(encoder_store, tmp_path):
    root = tmp_path / "store"
    copy_encoder(encoder_store, root)
    paths = make_images(tmp_path / "img", 1100)
    manifest = write_manifest(tmp_path / "m.csv", paths)
    run = encode_cli("--manifest", str(manifest), "--store", str(root), "--engine", "ray", "--workers", "2",
                     "--json")
    killed = None
    deadline = time.time() + 240
    while killed is None and time.time() < deadline and run.poll() is None:
        # Ray titles a worker process "ray::ShardWorker.encode" while it runs a shard.
        busy = [pid for pid, command in _descendants(run.pid) if "ShardWorker.encode" in command]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed = busy[0]
        time.sleep(0.05)
    try:
        out, err = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert killed, "no Ray worker was seen"
    assert run.returncode == 0, err
    assert json.loads(out)["images_encoded"] == 1100, out + err
    with FeatureStore(root) as store:
        assert store.stats()["encoders"][encoder_store[1].key]["images"] == 1100
    time.sleep(1)
    assert not [c for _, c in _descendants(run.pid)]


def test_bad_input_to_the_encode_cli_is_one_line(tmp_path):
    write_manifest(tmp_path / "m.csv", make_images(tmp_path / "img", 1))
    (tmp_path / "empty.csv").write_text("image,title,author,genres\n")
    for args in (("--manifest", str(tmp_path / "none.csv")), ("--manifest", str(tmp_path / "empty.csv")),
                 ("--manifest", str(tmp_path / "m.csv"), "--shard", "3/2"),
                 ("--manifest", str(tmp_path / "m.csv"), "--set", "model.backbone=style_cnn")):
        run = encode_cli(*args, "--store", str(tmp_path / "store"))
        _, err = run.communicate(timeout=120)
        assert run.returncode == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    with pytest.raises(ValueError, match="I/N"):
        parse_part("2")


def test_killing_the_driver_leaves_no_ray_process_behind(encoder_store, tmp_path):
    """Ray's agents outlive a kill -9 of the process that started Ray; the reaper ends them."""
    root = tmp_path / "store"
    copy_encoder(encoder_store, root)
    manifest = write_manifest(tmp_path / "m.csv", make_images(tmp_path / "img", 1100))
    run = encode_cli("--manifest", str(manifest), "--store", str(root), "--engine", "ray", "--workers", "2")
    seen: dict[int, str] = {}
    deadline = time.time() + 240
    while time.time() < deadline and run.poll() is None:
        seen.update((pid, command) for pid, command in _descendants(run.pid))
        if any("ShardWorker" in command for command in seen.values()):
            break
        time.sleep(0.05)
    assert any("raylet" in command for command in seen.values()), seen
    os.kill(run.pid, signal.SIGKILL)  # the driver alone, as the OOM killer would
    run.wait()
    deadline = time.time() + 10
    alive = list(seen)
    while alive and time.time() < deadline:
        alive = [pid for pid in seen if _alive(pid)]
        time.sleep(0.2)
    for pid in alive:  # leave nothing behind even when the test fails
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    assert not alive, [seen[pid] for pid in alive]
