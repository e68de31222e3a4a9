"""Distributors around `encode_shard`: in-process, a Ray actor pool, or one slice of N.

Each engine runs the same per-shard function on the same plan (in-process, its two halves:
`shard_contents`, then `write_shard` on a thread while the next shard is encoded), and only the
process that started the run writes the index (`FeatureStore.add_shard`), right after each
shard's file is in place. A worker killed mid-shard loses that shard and nothing else (in-process
with two lanes or more, also a finished one whose file was still being written: at most one shard
per lane); Ray restarts the actor and runs the shard again; a killed run's rerun skips every
finished shard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from tqdm import tqdm

from datasets.features.encoders import BATCH, LANE_BATCH, EncoderSpec, LiteRTEncoder
from datasets.features.shards import (
    ShardResult,
    ShardTask,
    encode_shard,
    encoded_shard,
    plan_shards,
    shard_contents,
    skipped_shard,
)
from datasets.features.store import FeatureStore, write_shard
from datasets.reaper import Reaper

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")
RAY_OBJECT_STORE_BYTES = 128 * 1024**2  # shards travel as files, not objects: a small object store will do
_IN_FLIGHT_PER_ACTOR = 2  # one running, one queued, so an actor never waits for the driver


@dataclass(frozen=True)
class EncodeReport:
    engine: str
    images_asked: int
    images_missing: int
    shards: int
    shards_written: int
    images_encoded: int
    images_unusable: int  # encoded but could not be decoded: stored with their problem
    seconds: float

    def describe(self) -> str:
        rate = self.images_encoded / self.seconds if self.seconds else 0.0
        broken = f", {self.images_unusable} could not be decoded" if self.images_unusable else ""
        return (f"feature store: {self.images_asked} images, {self.images_missing} not stored; "
                f"{self.images_encoded} encoded in {self.shards_written} shards by {self.engine} "
                f"({self.seconds:.1f} s, {rate:.1f} img/s){broken}")


def parse_part(text: str | None) -> tuple[int, int] | None:
    """`--shard I/N` -> (I, N), 0 <= I < N."""
    if not text:
        return None
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard takes I/N (for example 0/4), got {text!r}") from None
    if not (count >= 1 and 0 <= index < count):
        raise ValueError(f"--shard {text}: I must be in 0..N-1 and N at least 1")
    return index, count


def encode_missing(store: FeatureStore, spec: EncoderSpec, digests: Sequence[str | None],
                   paths: Sequence[str | os.PathLike], engine: str = "local",
                   part: tuple[int, int] | None = None,
                   ray_address: str | None = None, workers: int | None = None, progress: bool = True,
                   encoder=None, check: Callable[[], None] | None = None) -> EncodeReport:
    """Encode every image of `digests` (None: unreadable, skipped) that the store lacks. `encoder`
    (local engine only): a callable uint8 [n, H, W, 3] -> [n, dim] instead of the spec's LiteRT
    network, e.g. the Keras backbone on a GPU. `check` (local engine): called before each shard,
    it may raise to stop the run there (a stop request); the shards written stay stored."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    started = time.perf_counter()
    spec.check_resize()  # every engine's run starts here: this machine's Pillow must resize alike
    store.reconcile(spec.key)
    missing = store.missing(spec.key, digests)
    # Absolute paths: a Ray worker runs in a folder of its own.
    tasks = plan_shards(spec.key, [(digests[i], os.path.abspath(paths[i])) for i in missing], part)
    todo = sum(len(t.digests) for t in tasks)
    with tqdm(total=todo, desc=f"encode ({engine})", unit="img", disable=not progress or not todo) as bar:
        if not tasks:
            results: list[ShardResult] = []
        elif engine == "ray":
            results = _run_ray(store, spec, tasks, ray_address, workers, bar)
        else:
            results = _run_local(store, spec, tasks, encoder, workers, bar, check)
    written = [r for r in results if not r.skipped]
    report = EncodeReport(engine, len(digests), len(missing), len(tasks), len(written),
                          sum(r.images for r in written), sum(r.images - r.usable for r in written),
                          time.perf_counter() - started)
    log.info("%s", report.describe())
    return report


def litert_lanes(spec: EncoderSpec, count: int | None = None) -> list[LiteRTEncoder]:
    """One single-threaded interpreter per core (or `count`): the fastest way found to run the
    store's network beside decoding on a CPU (docs/benchmarks.md, tenth session)."""
    return [LiteRTEncoder(spec, 1) for _ in range(max(1, count or os.cpu_count() or 1))]


def _run_local(store: FeatureStore, spec: EncoderSpec, tasks: list[ShardTask], encoder, workers: int | None,
               bar, check: Callable[[], None] | None = None) -> list[ShardResult]:
    """Encode each shard in turn; with two lanes or more, a finished shard's file is written on a
    thread of its own while the lanes encode the next one (a write takes 15-200 ms,
    docs/benchmarks.md, fifteenth session), and indexed here once it is in place. A stop between
    shards (`check`), an error or an interrupt still lets the write in flight finish: only a kill -9
    loses it, and then at most one shard per lane (one being written, one being encoded)."""
    # A caller's encoder (Keras on a GPU) runs whole batches with decoding ahead of it.
    lanes, batch = ([encoder], BATCH) if encoder else (litert_lanes(spec, workers), LANE_BATCH)
    # One lane (or a caller's encoder) writes in turn: a kill then loses at most the one shard, as
    # for any single worker; overlapping would save it only a few % (docs/benchmarks.md).
    overlap = len(lanes) > 1
    results: list[ShardResult] = []
    writing: tuple[ShardResult, Future] | None = None

    def indexed(result: ShardResult, write: Future | None = None) -> None:
        if write:
            write.result()  # the write's own error, if any
        store.add_shard(spec.key, result.name)
        results.append(result)
        bar.update(result.images)

    with ThreadPoolExecutor(1, thread_name_prefix="shard-writer") as writer:
        try:
            for task in tasks:
                if check:
                    check()
                path = store.shard_path(spec.key, task.name)
                if path.exists():
                    indexed(skipped_shard(task))
                    continue
                started = time.perf_counter()
                contents = shard_contents(task, lanes, spec.size, spec.dim, batch, dtype=spec.dtype)
                if writing:
                    done, writing = writing, None
                    indexed(*done)
                result = encoded_shard(task, contents, started)
                if overlap:
                    writing = (result, writer.submit(write_shard, path, contents))
                else:
                    write_shard(path, contents)
                    indexed(result)
        finally:
            if writing:  # a stop, an error or an interrupt: the finished shard is still kept
                indexed(*writing)
    return results


class ShardWorker:
    """A Ray actor: one LiteRT replica, encoding whole shards into the shared store."""

    def __init__(self, root: str, key: str, threads: int):
        self.spec = EncoderSpec.load(root, key)
        self.store = FeatureStore(root)
        self.lanes = litert_lanes(self.spec, threads)

    def encode(self, task: ShardTask) -> ShardResult:
        self.spec.check_resize()  # this node's Pillow, which may not be the driver's
        return encode_shard(task, self.lanes, self.spec.size, self.spec.dim,
                            self.store.shard_path(self.spec.key, task.name), LANE_BATCH,
                            dtype=self.spec.dtype)

    def pid(self) -> int:
        return os.getpid()


def start_ray(address: str | None, workers: int | None):
    """Join `address`, or start a small local Ray (no dashboard); returns (ray, started here)."""
    import ray

    if ray.is_initialized():
        return ray, False
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **options)
    else:
        ray.init(num_cpus=workers or os.cpu_count() or 1, object_store_memory=RAY_OBJECT_STORE_BYTES,
                 **options)
    return ray, True


def _run_ray(store: FeatureStore, spec: EncoderSpec, tasks: list[ShardTask], address: str | None,
             workers: int | None, bar) -> list[ShardResult]:
    # The reaper ends a local Ray's agents if this process is killed (they outlive it otherwise);
    # Ray's notices (a worker died, and so on) go to stderr: stdout is the command's own answer.
    with Reaper(), contextlib.redirect_stdout(sys.stderr):
        ray, started_here = start_ray(address, workers)
        actors: list = []
        try:
            return _ray_loop(ray, store, spec, tasks, workers, bar, actors)
        finally:
            for actor in actors:
                ray.kill(actor)
            if started_here:
                ray.shutdown()


def _ray_loop(ray, store: FeatureStore, spec: EncoderSpec, tasks: list[ShardTask], workers: int | None, bar,
              actors: list) -> list[ShardResult]:
    count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    # A killed actor is restarted and its shard run again (at-least-once; the file rename
    # and the index keep each image stored once).
    remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(ShardWorker)
    actors.extend(remote.remote(str(store.root), spec.key, 1) for _ in range(count))
    queue, running, results = list(reversed(tasks)), {}, []
    while queue or running:
        for depth in range(1, _IN_FLIGHT_PER_ACTOR + 1):  # every actor one shard before any gets two
            for actor in actors:
                if queue and sum(1 for a, _ in running.values() if a is actor) < depth:
                    task = queue.pop()
                    running[actor.encode.remote(task)] = (actor, task)
        done, _ = ray.wait(list(running), num_returns=1)
        running.pop(done[0])
        try:
            result = ray.get(done[0])
        except ray.exceptions.RayTaskError as err:
            # The worker's own error (this node resizes otherwise, it cannot see the images), not
            # Ray's wrapper, whose first line names only the actor and its process.
            raise (err.cause if isinstance(err.cause, Exception) else err) from None
        store.add_shard(spec.key, result.name)
        results.append(result)
        bar.update(result.images)
    return results
