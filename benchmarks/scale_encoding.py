"""catalog_scale.py's encoding parts: throughput against today's path and the bare network, the
digests, one lane's writes; and the helpers every image part shares (the converted encoder, fresh
stores, a timed store run). Imported by the benchmark scripts beside it, which put the repository
on sys.path first."""

from __future__ import annotations

import csv
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from datasets.features.digests import content_digests
from datasets.features.encoders import BATCH, LANE_BATCH, EncoderSpec, LiteRTEncoder
from datasets.features.engines import encode_missing, litert_lanes
from datasets.features.store import FeatureStore, write_shard
from datasets.images import load_resized
from inference.litert_model import IMAGE_BATCH

SIZE = (320, 320)
BARE_IMAGES = 512  # decoded beforehand for the bare network (157 MB at 320 px)


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


def timed_store_run(spec, paths, engine="local", workers=None):
    start = time.perf_counter()
    with FeatureStore(spec.root) as store:
        digests = content_digests(store, paths, progress=False)
        report = encode_missing(store, spec, digests, paths, engine, workers=workers, progress=False)
    return report, time.perf_counter() - start


def throughput(paths: list[Path], spec, work: Path, rounds: int = 3) -> dict:
    """Today's path, the store and the bare network in `rounds` alternating rounds; each round's
    ratios come from one window of minutes, and the run reports their medians beside every round."""
    from training.config import ModelConfig
    from training.model_setup import build_backbone

    keras_backbone = build_backbone(ModelConfig(), SIZE)
    decoded = np.stack([load_resized(p, SIZE) for p in paths[:BARE_IMAGES]])
    done = [_throughput_round(paths, spec, work, keras_backbone, decoded) for _ in range(rounds)]
    median = {k: float(np.median([r[k] for r in done])) for k in ("speedup_vs_today", "share_of_bare",
                                                                      "bare_vs_today")}
    return {
        "images": len(paths),
        "rounds": rounds,
        # Each round's ratios are taken in its own window, then the medians; a lone round's can
        # swing with this machine's drift (the bare network by 40% within one round, 93 to 131 img/s).
        **{k: round(v, 3 if k == "share_of_bare" else 2) for k, v in median.items()},
        **{k: round(float(np.median([r[k] for r in done])), 2)
           for k in ("today_img_per_s", "store_img_per_s", "bare_img_per_s")},
        "both_targets_in_rounds": sum(r["speedup_vs_today"] >= 2.5 and r["share_of_bare"] >= 0.85
                                      for r in done),
        "by_round": [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in done],
    }


def _throughput_round(paths: list[Path], spec, work: Path, keras_backbone, decoded: np.ndarray) -> dict:
    from training.feature_cache import encode_all

    shutil.rmtree(work / "today-cache", ignore_errors=True)  # every round encodes again
    start = time.perf_counter()
    encode_all(paths, SIZE, keras_backbone, "benchmark", work / "today-cache", progress=False)
    today = time.perf_counter() - start
    # The bare network is measured just before and just after the store's run, and each way of
    # running it counts at the mean of the two: this machine's speed drifts by a few % over minutes.
    before = bare_network_rates(spec, decoded)
    store_spec = fresh_store(spec, work / "store")
    report, new = timed_store_run(store_spec, paths)
    after = bare_network_rates(spec, decoded)
    bare_rates = {k: (before[k] + after[k]) / 2 for k in before}
    fastest = max(bare_rates, key=bare_rates.get)
    bare = bare_rates[fastest]
    today_rate, store_rate = len(paths) / today, len(paths) / new
    return {
        "today_img_per_s": today_rate,
        "store_img_per_s": store_rate,
        "bare_img_per_s": bare,
        "speedup_vs_today": store_rate / today_rate,
        "share_of_bare": store_rate / bare,
        # speedup = share x this: both targets (2.5x, share 0.85) can hold only where it is >= 2.94
        "bare_vs_today": bare / today_rate,
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


