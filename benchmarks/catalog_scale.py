"""The feature store at catalog scale, each figure beside today's path in the same run; prints JSON.

usage: python benchmarks/catalog_scale.py DATA_DIR [--images 1024] [--work DIR]
                                          [--parts throughput,incremental,kill,ray,ray-cluster,synthetic,
                                                   queries,stored-queries,digests,one-lane]
                                          [--synthetic-images 100000,1000000] [--synthetic-dim 1024]

DATA_DIR is an image dataset with manifest.csv (`../shared/data/icon_themes.py`). Parts:
- throughput: frozen encoding end to end (decoding included) of the first --images images at the
  default 320 px: today's path (`training.feature_cache.encode_all`, the Keras backbone), the store's
  local engine (LiteRT, a fresh store), and the bare LiteRT network on images decoded beforehand
  (just before and just after the store's run, at the mean of the two).
- incremental: the store then gains 1% new images (encodes only those), and a new subset of stored
  images (encodes none).
- kill: `python -m training.encode` killed with SIGKILL when half the shards are written, then rerun:
  what the rerun encodes, and whether every image is stored exactly once.
- one-lane: a store run with one lane (`--workers 1`), which writes each shard before starting the
  next, against the same lane writing each shard on a thread beside the next (as two lanes or more
  do): alternating, fresh stores, median of three rounds.
- ray: the same images through `--engine ray` with two workers: features bit-identical to local, and
  throughput against local.
- ray-cluster: a two-node Ray cluster on this host; a worker killed mid-run (then `ray stop`).
- stored-queries: the demo bundle's answers for --images images, plain and through the store (cold,
  then warm): `inference.similar/report/enroll --store`.
- queries: the demo bundle grown to --query-titles titles and --query-exemplars generated exemplars:
  the graph's build, warm single queries of real images' outputs, and `python -m inference.enroll`
  of 1,000 real images into it, end to end.
- synthetic: shards of generated features (no images), written and gathered back, at each size of
  --synthetic-images, in a fresh process each: throughput, and the peak memory (it must not grow with N).
- digests: `content_digests` of --images files into a fresh store, beside the form it had until the
  fifteenth session (a thread-pool future per file, pathlib's absolute paths) and one thread hashing
  alone, alternating, median of three rounds (warm page cache).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from datasets.features.digests import content_digests  # noqa: E402
from datasets.features.encoders import BATCH, LANE_BATCH, EncoderSpec, LiteRTEncoder  # noqa: E402
from datasets.features.engines import encode_missing, litert_lanes  # noqa: E402
from datasets.features.store import FeatureStore, ShardContents, write_shard  # noqa: E402
from datasets.images import load_resized  # noqa: E402
from inference.litert_model import IMAGE_BATCH  # noqa: E402

SIZE = (320, 320)
BARE_IMAGES = 512  # decoded beforehand for the bare network (157 MB at 320 px)
SYNTHETIC_CHUNK = 65_536  # digests asked of the store at a time in the synthetic part


def manifest_paths(data_dir: Path) -> list[Path]:
    with open(data_dir / "manifest.csv", newline="") as f:
        return [data_dir / row["image"] for row in csv.DictReader(f)]


def converted_encoder(root: Path, paths: list[Path]):
    """The default model's store encoder, converted into `root` (timed apart: a one-off)."""
    from training.config import ModelConfig
    from training.style_encoder import ensure_encoder

    start = time.perf_counter()
    with FeatureStore(root) as store:
        spec = ensure_encoder(store, ModelConfig(), SIZE, 0, paths[:16])
    return spec, time.perf_counter() - start


def fresh_store(spec, root: Path):
    """An empty store with `spec`'s encoder files."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "encoders").mkdir(parents=True)
    for path in (spec.json_path, spec.tflite_path):
        shutil.copy(path, root / "encoders" / path.name)
    return EncoderSpec.load(root, spec.key)


def encode_command(paths: list[Path], manifest: Path, root: Path, *extra: str) -> list[str]:
    """`python -m training.encode` over `paths` (written to `manifest` with absolute paths) into `root`."""
    manifest.write_text("image,title,author,genres\n" + "".join(f"{p.resolve()},t,a,\n" for p in paths))
    return [
        sys.executable,
        "-m",
        "training.encode",
        "--manifest",
        str(manifest),
        "--store",
        str(root),
        "--quiet",
        "--json",
        *extra,
    ]


def timed_store_run(spec, paths, engine="local", workers=None):
    start = time.perf_counter()
    with FeatureStore(spec.root) as store:
        digests = content_digests(store, paths, progress=False)
        report = encode_missing(store, spec, digests, paths, engine, workers=workers, progress=False)
    return report, time.perf_counter() - start


def throughput(paths: list[Path], spec, work: Path) -> dict:
    from training.config import ModelConfig
    from training.feature_cache import encode_all
    from training.model_setup import build_backbone

    keras_backbone = build_backbone(ModelConfig(), SIZE)
    shutil.rmtree(work / "today-cache", ignore_errors=True)  # a rerun in the same --work must encode again
    start = time.perf_counter()
    encode_all(paths, SIZE, keras_backbone, "benchmark", work / "today-cache", progress=False)
    today = time.perf_counter() - start
    decoded = np.stack([load_resized(p, SIZE) for p in paths[:BARE_IMAGES]])
    # The bare network is measured just before and just after the store's run, and each way of
    # running it counts at the mean of the two: this machine's speed drifts by a few % over minutes.
    before = bare_network_rates(spec, decoded)
    store_spec = fresh_store(spec, work / "store")
    report, new = timed_store_run(store_spec, paths)
    after = bare_network_rates(spec, decoded)
    bare_rates = {k: (before[k] + after[k]) / 2 for k in before}
    fastest = max(bare_rates, key=bare_rates.get)
    bare = bare_rates[fastest]
    rates = {
        "today_img_per_s": len(paths) / today,
        "store_img_per_s": len(paths) / new,
        "bare_img_per_s": bare,
    }
    return {
        "images": len(paths),
        **{k: round(v, 2) for k, v in rates.items()},
        "speedup_vs_today": round(rates["store_img_per_s"] / rates["today_img_per_s"], 2),
        "share_of_bare": round(rates["store_img_per_s"] / bare, 3),
        # speedup = share x this: both targets (2.5x, share 0.85) can hold in a run only where it is >= 2.94
        "bare_vs_today": round(bare / rates["today_img_per_s"], 2),
        "bare_img_per_s_by_runtime": {k: round(v, 2) for k, v in bare_rates.items()},
        "fastest_bare_before_and_after_store": [round(before[fastest], 2), round(after[fastest], 2)],
        "store_encoded": report.images_encoded,
    }


def digest_rates(paths: list[Path], work: Path, rounds: int = 3) -> dict:
    """Seconds for `content_digests` against a future per file (its earlier form) and one thread."""
    from datasets.features.digests import file_sha256

    threads = min(8, 2 * (os.cpu_count() or 1))

    def future_per_file() -> None:
        keys = [str(Path(p).absolute()) for p in paths]
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(os.stat, keys))
            list(pool.map(file_sha256, keys))

    def one_thread() -> None:
        for path in paths:
            file_sha256(path)

    def store_digests() -> float:
        shutil.rmtree(work / "digests-store", ignore_errors=True)
        with FeatureStore(work / "digests-store") as store:
            start = time.perf_counter()
            content_digests(store, paths, threads=threads, progress=False)
            return time.perf_counter() - start

    def timed(run) -> float:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start

    one_thread()  # the files into the page cache: every form reads them warm
    times: dict[str, list[float]] = {"content_digests": [], "future_per_file": [], "one_thread": []}
    for _ in range(rounds):
        times["content_digests"].append(store_digests())
        times["future_per_file"].append(timed(future_per_file))
        times["one_thread"].append(timed(one_thread))
    return {"files": len(paths), "threads": threads,
            **{f"{k}_ms": round(1000 * float(np.median(v)), 1) for k, v in times.items()},
            "rounds_ms": {k: [round(1000 * x, 1) for x in v] for k, v in times.items()}}


def one_lane_writes(paths: list[Path], spec, work: Path, rounds: int = 3) -> dict:
    """A one-lane store run (`--workers 1`: each shard written before the next is started, so a kill
    loses at most one) against the same lane writing each shard on a thread beside the next, as two
    lanes or more do: alternating, fresh stores, median of `rounds`."""
    from datasets.features.shards import plan_shards, shard_contents

    def in_turn() -> float:
        return timed_store_run(fresh_store(spec, work / "one-lane"), paths, workers=1)[1]

    def overlapped() -> float:
        store_spec = fresh_store(spec, work / "one-lane")
        start = time.perf_counter()
        with FeatureStore(store_spec.root) as store, ThreadPoolExecutor(1) as writer:
            digests = content_digests(store, paths, progress=False)
            lanes = litert_lanes(store_spec, 1)
            pending = None
            items = [(d, str(p.absolute())) for d, p in zip(digests, paths, strict=True)]
            for task in plan_shards(spec.key, items):
                contents = shard_contents(task, lanes, spec.size, spec.dim, LANE_BATCH, dtype=spec.dtype)
                if pending:
                    pending[1].result()
                    store.add_shard(spec.key, pending[0])
                path = store.shard_path(spec.key, task.name)
                pending = task.name, writer.submit(write_shard, path, contents)
            pending[1].result()
            store.add_shard(spec.key, pending[0])
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"in_turn": [], "overlapped": []}
    for _ in range(rounds):
        times["in_turn"].append(in_turn())
        times["overlapped"].append(overlapped())
    median = {k: float(np.median(v)) for k, v in times.items()}
    return {"images": len(paths), **{f"{k}_img_per_s": round(len(paths) / v, 2) for k, v in median.items()},
            "in_turn_share_of_overlapped": round(median["overlapped"] / median["in_turn"], 3),
            "rounds_s": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def bare_network_rates(spec, decoded: np.ndarray) -> dict[str, float]:
    """The network alone on images decoded beforehand, each way of running it on this machine's
    cores (warmed up first); the fastest is the bare rate the store is held against."""
    whole = LiteRTEncoder(spec)  # one interpreter, every core

    def one_interpreter(batch: int) -> float:
        whole(decoded[:batch])
        start = time.perf_counter()
        for first in range(0, len(decoded), batch):
            whole(decoded[first : first + batch])
        return len(decoded) / (time.perf_counter() - start)

    rates = {f"one_interpreter_batch_{b}": one_interpreter(b) for b in (BATCH, IMAGE_BATCH)}
    lanes = litert_lanes(spec)
    for lane in lanes:
        lane(decoded[:LANE_BATCH])
    shares = np.array_split(np.arange(len(decoded)), len(lanes))

    def run(lane, rows) -> None:
        for first in range(0, len(rows), LANE_BATCH):
            lane(decoded[rows[first : first + LANE_BATCH]])

    start = time.perf_counter()
    with ThreadPoolExecutor(len(lanes)) as pool:
        list(pool.map(run, lanes, shares))
    seconds = time.perf_counter() - start
    rates[f"{len(lanes)}_single_thread_lanes_batch_{LANE_BATCH}"] = len(decoded) / seconds
    return rates


def incremental(all_paths: list[Path], n: int, spec, work: Path) -> dict:
    store_spec = fresh_store(spec, work / "store-incremental")
    timed_store_run(store_spec, all_paths[:n])
    new = max(1, n // 100)
    grown, seconds = timed_store_run(store_spec, all_paths[: n + new])
    rng = np.random.default_rng(0)
    subset = [all_paths[i] for i in sorted(rng.permutation(n)[: n // 2])]
    again, _ = timed_store_run(store_spec, subset)
    return {
        "stored": n,
        "new_images": new,
        "encoded_after_adding": grown.images_encoded,
        "encoded_ratio": round(grown.images_encoded / new, 3),
        "seconds": round(seconds, 2),
        "subset_images": len(subset),
        "encoded_for_subset": again.images_encoded,
    }


def kill_and_rerun(paths: list[Path], spec, work: Path) -> dict:
    store_spec = fresh_store(spec, work / "store-kill")
    command = encode_command(paths, work / "kill.csv", store_spec.root)
    shards = store_spec.root / "shards" / spec.key
    planned = -(-len(paths) // 512)
    victim = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    while victim.poll() is None and len(list(shards.glob("*.npz"))) < planned // 2:
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    kept = len(list(shards.glob("*.npz")))
    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
    report = json.loads(rerun.stdout)
    with FeatureStore(store_spec.root) as store:
        rows = store.db.execute("SELECT SUM(rows) FROM shards").fetchone()[0]
        images = store.stats()["encoders"][spec.key]["images"]
    return {
        "images": len(paths),
        "shards_planned": planned,
        "shards_kept_after_kill": kept,
        "rerun_encoded": report["images_encoded"],
        "rerun_shards": report["shards_written"],
        "shards_reencoded_beyond_lost": report["shards_written"] - (planned - kept),
        "stored_images": images,
        "stored_rows": rows,
        "exactly_once": images == rows == len(paths),
    }


def ray_engine(paths: list[Path], spec, work: Path) -> dict:
    local_spec = fresh_store(spec, work / "store-local")
    _, local_seconds = timed_store_run(local_spec, paths)
    ray_spec = fresh_store(spec, work / "store-ray")
    _, ray_seconds = timed_store_run(ray_spec, paths, "ray", workers=2)
    features = []
    for root in (local_spec, ray_spec):
        with FeatureStore(root.root) as store:
            digests = content_digests(store, paths, progress=False)
            out = np.zeros((len(paths), spec.dim), np.float32)
            store.gather(spec.key, digests, out)
            features.append(out)
    return {
        "images": len(paths),
        "local_seconds": round(local_seconds, 2),
        "ray_seconds": round(ray_seconds, 2),
        "ray_vs_local_throughput": round(local_seconds / ray_seconds, 3),
        "bit_identical": bool(np.array_equal(*features)),
    }


def ray_cluster(paths: list[Path], spec, work: Path) -> dict:
    """Two Ray nodes on this host (`ray start --head`, then `ray start --address`), the encoder joining
    them with --ray-address; one worker is killed with SIGKILL mid-run. Ends with `ray stop`, which
    stops every Ray process of this user on the machine."""
    store_spec = fresh_store(spec, work / "store-cluster")
    ray = str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "token"}  # Ray 2.60's `ray start --head` turns token auth on
    address = "127.0.0.1:6390"
    try:
        subprocess.run(
            [
                ray,
                "start",
                "--head",
                "--port",
                "6390",
                "--num-cpus",
                "1",
                "--include-dashboard",
                "false",
                "--disable-usage-stats",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [ray, "start", "--address", address, "--num-cpus", "1", "--disable-usage-stats"],
            env=env,
            check=True,
            capture_output=True,
        )
        start = time.perf_counter()
        command = encode_command(
            paths, work / "cluster.csv", store_spec.root, "--engine", "ray", "--ray-address", address
        )
        run = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        killed = False
        while run.poll() is None and not killed:
            busy = subprocess.run(["pgrep", "-f", "ray::ShardWorker.encode"], capture_output=True, text=True)
            if busy.stdout.split():
                time.sleep(2)
                os.kill(int(busy.stdout.split()[0]), signal.SIGKILL)
                killed = True
            time.sleep(0.1)
        out, _ = run.communicate()
        seconds = time.perf_counter() - start
    finally:
        subprocess.run([ray, "stop"], env=env, capture_output=True)
    report = json.loads(out)
    with FeatureStore(store_spec.root) as store:
        rows = store.db.execute("SELECT SUM(rows) FROM shards").fetchone()[0]
        images = store.stats()["encoders"][spec.key]["images"]
    return {
        "nodes": 2,
        "images": len(paths),
        "worker_killed": killed,
        "completed": run.returncode == 0,
        "images_encoded": report["images_encoded"],
        "seconds": round(seconds, 1),
        "exactly_once": images == rows == len(paths),
    }


def catalog_bundle(root: Path, titles: int, exemplars: int, rng: np.random.Generator):
    """The demo bundle grown to `titles` titles and `exemplars` generated exemplars in its own
    exemplar space (each title a cluster; authors and genres drawn from the bundle's own), saved
    to `root` as a real bundle that `StyleFinder` and `python -m inference.enroll` open."""
    from dataclasses import replace

    from inference.bundle import Bundle, TitleEntry
    from inference.search import unit_rows

    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(REPO / "inference" / "demo_bundle", root)
    demo = Bundle.load(root)
    titles = max(titles, len(demo.titles))
    space = demo.title_exemplars
    dim = space.vectors.shape[1]
    entries = list(demo.titles) + [
        TitleEntry(f"generated-{t}", demo.authors[t % len(demo.authors)], (), demo.titles[0].thumbnails, 1)
        for t in range(len(demo.titles), titles)
    ]
    centres = unit_rows(rng.standard_normal((titles, dim)).astype(np.float32))
    owner = rng.integers(0, titles, exemplars).astype(np.int32)
    vectors = unit_rows(
        centres[owner] + 0.6 * unit_rows(rng.standard_normal((exemplars, dim)).astype(np.float32))
    )
    embeddings = unit_rows(rng.standard_normal((titles, demo.title_embeddings.shape[1])).astype(np.float32))
    grown = replace(
        demo,
        titles=entries,
        title_embeddings=embeddings,
        exemplars=replace(space, vectors=vectors, titles=owner, _index=None, _groups=None),
        title_index="title_index-generated.npz",
    )
    grown.save()
    return centres, owner


def catalog_queries(data_dir: Path, titles: int, exemplars: int, work: Path, enroll: int = 1000) -> dict:
    """A real bundle of `titles` titles and `exemplars` exemplars (`catalog_bundle`): its graph
    built in a fresh `StyleFinder`, warm single queries of real images' outputs (`StyleFinder.answer`,
    the whole answer; the LiteRT forward pass is apart: see throughput), and `python -m
    inference.enroll` of `enroll` real images into it as 20 new titles, timed as a user runs it
    (process start, loading the bundle and its graph, the forward pass, the graph extended, the
    calibration, the bundle written)."""
    from inference.query import StyleFinder
    from inference.search import unit_rows

    rng = np.random.default_rng(0)
    root = work / "catalog-bundle"
    start = time.perf_counter()
    centres, owner = catalog_bundle(root, titles, exemplars, rng)
    generate = time.perf_counter() - start
    finder = StyleFinder(root)
    space = finder.bundle.title_exemplars
    real = manifest_paths(data_dir)
    order = rng.permutation(len(real))
    paths = [real[i] for i in order[: min(200, len(real) // 2)]]
    outputs = {}
    for s in range(0, len(paths), 32):
        for name, value in finder.encode(
            np.stack([load_resized(p, SIZE) for p in paths[s : s + 32]])
        ).items():
            outputs.setdefault(name, []).append(value)
    outputs = {name: np.concatenate(value) for name, value in outputs.items()}
    start = time.perf_counter()
    finder.answer({name: value[:1] for name, value in outputs.items()}, ["first"], k=10)
    build = time.perf_counter() - start
    times = []
    for i in range(len(paths)):
        start = time.perf_counter()
        finder.answer({name: value[i : i + 1] for name, value in outputs.items()}, [str(paths[i])], k=10)
        times.append(time.perf_counter() - start)
    # Generated queries near their own cluster: does the graph find their title?
    near = unit_rows(centres[owner[:200]] + 0.6 * unit_rows(rng.standard_normal((200, len(centres[0])))))
    titles = len(finder.bundle.titles)
    hits = space.scores(near.astype(np.float32), titles).argmax(axis=1) == owner[:200]
    del finder
    new = [real[i] for i in order[len(paths) : len(paths) + enroll]]
    manifest = work / "enroll.csv"
    manifest.write_text(
        "image,title,author,genres\n"
        + "".join(f"{p.resolve()},new-title-{k % 20},new-author-{k % 7},\n" for k, p in enumerate(new))
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "inference.enroll", str(manifest), "--bundle", str(root), "--quiet"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    enroll_seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"error: enroll failed: {done.stderr.strip()}")
    times_ms = np.array(times) * 1000
    return {
        "titles": titles,
        "exemplars": exemplars,
        "exemplar_dim": int(space.vectors.shape[1]),
        "generate_and_save_seconds": round(generate, 1),
        "graph_build_seconds": round(build, 1),
        "query_p50_ms": round(float(np.percentile(times_ms, 50)), 2),
        "query_p99_ms": round(float(np.percentile(times_ms, 99)), 2),
        "queries": len(times),
        "top1_title_of_own_cluster": round(float(hits.mean()), 3),
        "enroll_images": len(new),
        "enroll_seconds": round(enroll_seconds, 1),
        "enroll_output": done.stdout.strip(),
    }


def stored_queries(data_dir: Path, images: int, work: Path) -> dict:
    """The batch query path with and without the store: the demo bundle's outputs for `images`
    images through `StyleFinder.query` (batches of 32, as `inference.similar` reads them), then
    through `StoredOutputs` into a fresh store, then again from it; and whether all agree."""
    from inference.query import StyleFinder
    from inference.stored_outputs import StoredOutputs

    paths = manifest_paths(data_dir)[:images]
    finder = StyleFinder()
    start = time.perf_counter()
    plain = [finder.query(paths[i : i + 32], k=10) for i in range(0, len(paths), 32)]
    plain_seconds = time.perf_counter() - start
    root = work / "query-store"
    shutil.rmtree(root, ignore_errors=True)
    timings, answers = [], []
    for _ in range(2):
        start = time.perf_counter()
        stored = StoredOutputs(finder, root, progress=False)
        outputs, _ = stored.outputs(paths)
        answers.append(finder.answer(outputs, [str(p) for p in paths], k=10))
        stored.close()
        timings.append(time.perf_counter() - start)
    same = all(
        [t.title for t in a.titles] == [t.title for t in b.titles]
        for a, b in zip([r for batch in plain for r in batch], answers[1], strict=True)
    )
    return {
        "images": len(paths),
        "plain_seconds": round(plain_seconds, 1),
        "store_cold_seconds": round(timings[0], 1),
        "store_warm_seconds": round(timings[1], 2),
        "warm_speedup": round(plain_seconds / timings[1], 1),
        "same_titles": same,
        "store_bytes_per_image": round(sum(f.stat().st_size for f in root.rglob("*.npz")) / len(paths)),
    }


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def synthetic_child(root: Path, images: int, dim: int) -> dict:
    """Write `images` generated feature rows in shards of 512, then gather them all into a memmap.
    Peak anonymous memory is sampled every 20 ms: the total RSS also counts the pages of the
    memory-mapped output, which the kernel writes back and drops as it needs."""
    import threading

    peak_anon = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak_anon[0] = max(peak_anon[0], _status_kb("RssAnon"))

    threading.Thread(target=sample, daemon=True).start()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with FeatureStore(root) as store:
        for first in range(0, images, 512):
            count = min(512, images - first)
            digests = np.array([f"{i:064x}" for i in range(first, first + count)])
            name = f"synthetic-{first:09d}"
            write_shard(
                store.shard_path("enc-synthetic", name),
                ShardContents(
                    digests,
                    rng.standard_normal((count, dim), np.float32).astype(np.float16),
                    np.ones(count, bool),
                    np.zeros(count, np.int64),
                    np.full(count, ""),
                ),
            )
            store.add_shard("enc-synthetic", name)
        written = time.perf_counter() - start
        out = np.lib.format.open_memmap(
            root / "gathered.npy", mode="w+", dtype=np.float16, shape=(images, dim)
        )
        start = time.perf_counter()
        all_found = True
        # A caller with a bounded memory asks for a chunk of digests at a time (a catalog's rows
        # are read the same way): nothing the store holds grows with the number of images.
        for first in range(0, images, SYNTHETIC_CHUNK):
            digests = [f"{i:064x}" for i in range(first, min(images, first + SYNTHETIC_CHUNK))]
            found, *_ = store.gather("enc-synthetic", digests, out[first : first + len(digests)])
            all_found &= bool(found.all())
        read = time.perf_counter() - start
        # A last sample before the store closes: a small run can end between two periodic ones.
        peak_anon[0] = max(peak_anon[0], _status_kb("RssAnon"))
    done.set()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's.
    peak_mb = _status_kb("VmHWM") / 1024
    return {
        "images": images,
        "dim": dim,
        "bytes": sum(p.stat().st_size for p in root.rglob("*.npz")),
        "write_img_per_s": round(images / written),
        "gather_img_per_s": round(images / read),
        "all_found": all_found,
        "peak_rss_mb": round(peak_mb),
        "peak_anonymous_mb": round(peak_anon[0] / 1024),
    }


def synthetic(sizes: list[int], dim: int, work: Path) -> list[dict]:
    results = []
    for images in sizes:
        root = work / f"synthetic-{images}"
        shutil.rmtree(root, ignore_errors=True)
        child = subprocess.run(
            [sys.executable, __file__, "--synthetic-child", str(root), str(images), str(dim)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout))
        shutil.rmtree(root, ignore_errors=True)
    return results


def image_parts(args: argparse.Namespace, parts: set[str]) -> dict:
    """The parts that encode real images, with the default encoder converted once for all of them."""
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py")
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()
    all_paths = manifest_paths(args.data_dir)
    all_paths = [all_paths[i] for i in np.random.default_rng(0).permutation(len(all_paths))]
    paths = all_paths[: args.images]
    args.work.mkdir(parents=True, exist_ok=True)
    spec, convert_seconds = converted_encoder(args.work / "encoder", paths)
    results = {"encoder": spec.key, "encoder_dim": spec.dim, "convert_seconds": round(convert_seconds, 1)}
    if "throughput" in parts:
        results["throughput"] = throughput(paths, spec, args.work)
    if "incremental" in parts:
        results["incremental"] = incremental(all_paths, args.images, spec, args.work)
    if "kill" in parts:
        results["kill"] = kill_and_rerun(all_paths[: max(args.images, 2048)], spec, args.work)
    if "one-lane" in parts:
        results["one_lane"] = one_lane_writes(paths, spec, args.work)
    if "ray" in parts:
        results["ray"] = ray_engine(paths, spec, args.work)
    if "ray-cluster" in parts:
        results["ray_cluster"] = ray_cluster(paths, spec, args.work)
    return results


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--synthetic-child":
        print(json.dumps(synthetic_child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--work", type=Path, default=Path("data/bench-catalog"))
    parser.add_argument("--parts", default="throughput,incremental,kill,ray,ray-cluster,synthetic,queries")
    parser.add_argument("--synthetic-images", default="100000,1000000")
    parser.add_argument("--synthetic-dim", type=int, default=1024)
    parser.add_argument("--query-titles", type=int, default=10_000)
    parser.add_argument("--query-exemplars", type=int, default=1_000_000)
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    results: dict = {}
    if parts & {"throughput", "incremental", "kill", "one-lane", "ray", "ray-cluster"}:
        results.update(image_parts(args, parts))
    if "queries" in parts:
        args.work.mkdir(parents=True, exist_ok=True)
        results["queries"] = catalog_queries(
            args.data_dir, args.query_titles, args.query_exemplars, args.work
        )
    if "stored-queries" in parts:
        results["stored_queries"] = stored_queries(args.data_dir, args.images, args.work)
    if "digests" in parts:
        args.work.mkdir(parents=True, exist_ok=True)
        results["digests"] = digest_rates(manifest_paths(args.data_dir)[: args.images], args.work)
    if "synthetic" in parts:
        args.work.mkdir(parents=True, exist_ok=True)
        results["synthetic"] = synthetic(
            [int(n) for n in args.synthetic_images.split(",")], args.synthetic_dim, args.work
        )
    print(
        json.dumps(
            {
                "benchmark": "catalog_scale",
                "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": {
                    "cpus": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                },
                "data": str(args.data_dir),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
