"""Other forms of the store's encoding lanes, each against the thread lanes in the same run; prints JSON.

usage: python benchmarks/lane_forms.py DATA_DIR [--images 512] [--rounds 16] [--work DIR]
                                       [--parts processes,pinned,process-engine]

DATA_DIR is an image dataset with manifest.csv (`../shared/data/icon_themes.py`). Parts, each in
alternating order round by round:
- processes: two lanes (one single-threaded LiteRT interpreter each, decoding and encoding their
  own half of the images) as two threads against two forked processes; the bare network in the
  same form before each, so each form has its share of the bare rate.
- pinned: two thread lanes, free against pinned to one core each (`os.sched_setaffinity`).
- process-engine: the local engine (`encode_missing`, two thread lanes) against a spawned pool of
  two processes, each with one interpreter, sent runs of 8 images and returning float16 features,
  the shards written and indexed as the engine does; fresh stores, start-up included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402
from scale_encoding import SIZE, converted_encoder, fresh_store, manifest_paths, timed_store_run  # noqa: E402

from datasets.features.digests import content_digests  # noqa: E402
from datasets.features.encoders import EncoderSpec, LiteRTEncoder  # noqa: E402
from datasets.features.shards import plan_shards  # noqa: E402
from datasets.features.store import FeatureStore, ShardContents, write_shard  # noqa: E402
from datasets.image_hash import difference_hash  # noqa: E402
from datasets.images import DEFAULT_MAX_PIXELS, ImageError, resized_image  # noqa: E402

RUN = 8  # images a process lane is sent at a time (the engine's lane runs)
_worker: tuple[EncoderSpec, LiteRTEncoder] | None = None  # a process lane's own interpreter


def decoded(path, size) -> tuple[np.ndarray, int]:
    image = resized_image(path, size, DEFAULT_MAX_PIXELS)
    return np.asarray(image, np.uint8), difference_hash(image)


def lane(spec, paths, rows, pixels, core: int | None) -> None:
    """One lane over `rows`: decode and encode, or only encode `pixels` (decoded beforehand)."""
    if core is not None:
        os.sched_setaffinity(0, {core})  # this thread only
    network = LiteRTEncoder(spec, 1)
    for i in rows:
        network((pixels[i % len(pixels)] if pixels is not None else decoded(paths[i], spec.size)[0])[None])


def two_lanes(spec, paths, pixels, form: str) -> float:
    """img/s of two lanes as `form`: threads, pinned threads or forked processes."""
    halves = [range(0, len(paths), 2), range(1, len(paths), 2)]
    cores = sorted(os.sched_getaffinity(0))
    args = [(spec, paths, rows, pixels, cores[k % len(cores)] if form == "pinned" else None)
            for k, rows in enumerate(halves)]
    if form == "processes":
        workers = [mp.get_context("fork").Process(target=lane, args=a) for a in args]
    else:
        workers = [threading.Thread(target=lane, args=a) for a in args]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(paths) / (time.perf_counter() - start)


def compare_forms(spec, paths, forms: tuple[str, str], rounds: int) -> dict:
    pixels = np.stack([decoded(p, spec.size)[0] for p in paths[:256]])
    rows = []
    for r in range(rounds):
        row = {}
        for form in forms if r % 2 == 0 else forms[::-1]:
            bare = two_lanes(spec, paths, pixels, form)
            end_to_end = two_lanes(spec, paths, None, form)
            row[form] = {"bare": round(bare, 1), "end_to_end": round(end_to_end, 1),
                         "share": round(end_to_end / bare, 3)}
        rows.append(row)
    a, b = forms
    return {"images": len(paths), "rounds": rows,
            **{f"{f}_mean_share": round(statistics.mean(x[f]["share"] for x in rows), 3) for f in forms},
            f"{b}_over_{a}_end_to_end_median": round(statistics.median(
                x[b]["end_to_end"] / x[a]["end_to_end"] for x in rows), 3)}


def _start_worker(root: str, key: str) -> None:
    global _worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when a run stops
    spec = EncoderSpec.load(root, key)
    _worker = spec, LiteRTEncoder(spec, 1)


def _encode_run(items: list[tuple[int, str]]):
    spec, network = _worker
    features = np.zeros((len(items), spec.dim), np.float16)
    usable, dhash, problems = np.zeros(len(items), bool), np.zeros(len(items), np.int64), [""] * len(items)
    for j, (_, path) in enumerate(items):
        try:
            pixels, dhash[j] = decoded(path, spec.size)
        except ImageError as err:
            problems[j] = str(err)
            continue
        features[j], usable[j] = network(pixels[None])[0], True
    return [i for i, _ in items], features, usable, dhash, problems


def process_engine(spec, paths: list[Path]) -> float:
    """Seconds for a fresh store through a spawned pool of two process lanes (start-up included)."""
    start = time.perf_counter()
    pool = ProcessPoolExecutor(2, mp_context=mp.get_context("spawn"), initializer=_start_worker,
                               initargs=(str(spec.root), spec.key))
    with FeatureStore(spec.root) as store, pool, ThreadPoolExecutor(1) as writer:
        digests = content_digests(store, paths, progress=False)
        pending = None
        items = [(d, str(p.absolute())) for d, p in zip(digests, paths, strict=True)]
        for task in plan_shards(spec.key, items):
            n = len(task.digests)
            features, usable = np.zeros((n, spec.dim), np.float16), np.zeros(n, bool)
            dhash, problems = np.zeros(n, np.int64), [""] * n
            runs = list(enumerate(task.paths))
            for future in [pool.submit(_encode_run, runs[s:s + RUN]) for s in range(0, n, RUN)]:
                rows, features[rows], usable[rows], dhash[rows], found = future.result()
                for i, problem in zip(rows, found, strict=True):
                    problems[i] = problem
            contents = ShardContents(np.array(task.digests), features, usable, dhash, np.array(problems))
            if pending:
                pending[1].result()
                store.add_shard(spec.key, pending[0])
            pending = task.name, writer.submit(write_shard, store.shard_path(spec.key, task.name), contents)
        pending[1].result()
        store.add_shard(spec.key, pending[0])
    return time.perf_counter() - start


def compare_engines(spec, paths: list[Path], work: Path, rounds: int) -> dict:
    rows = []
    for r in range(rounds):
        row = {}
        for form in ("threads", "processes") if r % 2 == 0 else ("processes", "threads"):
            store_spec = fresh_store(spec, work / "lane-forms-store")
            seconds = (timed_store_run(store_spec, paths, workers=2)[1] if form == "threads"
                       else process_engine(store_spec, paths))
            row[form] = round(len(paths) / seconds, 1)
        rows.append(row)
    ratios = [x["processes"] / x["threads"] for x in rows]
    return {"images": len(paths), "rounds_img_per_s": rows,
            "processes_over_threads_median": round(statistics.median(ratios), 3),
            "processes_faster_in": sum(x > 1 for x in ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("data/bench-lanes"))
    parser.add_argument("--parts", default="processes,pinned,process-engine")
    args = parser.parse_args()
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py")
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()  # the encoder's one conversion; forked lanes never touch TensorFlow
    paths = manifest_paths(args.data_dir)
    paths = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))][: args.images]
    args.work.mkdir(parents=True, exist_ok=True)
    spec, _ = converted_encoder(args.work / "encoder", paths)
    parts = set(args.parts.split(","))
    results: dict = {}
    if "processes" in parts:
        results["processes"] = compare_forms(spec, paths, ("threads", "processes"), args.rounds)
    if "pinned" in parts:
        results["pinned"] = compare_forms(spec, paths, ("threads", "pinned"), args.rounds)
    if "process-engine" in parts:
        results["process_engine"] = compare_engines(spec, paths, args.work, args.rounds)
    shutil.rmtree(args.work / "lane-forms-store", ignore_errors=True)
    print(json.dumps({"benchmark": "lane_forms", "date": time.strftime("%Y-%m-%d %H:%M"),
                      "machine": machine(size=list(SIZE)),
                      "data": str(args.data_dir), "results": results}, indent=2))


if __name__ == "__main__":
    main()
