"""The heavy work as a pure function of one shard, and the plan that cuts images into shards.

`encode_shard` reads a shard's images, encodes them and writes one complete file; it touches
no index and no other shard, so any distributor can run it anywhere the store and the images
are reachable, and a rerun skips a shard whose file is already there. The plan is a pure
function of the missing images: they are sorted by digest and cut into runs of
`SHARD_IMAGES`, each named by a digest of its contents, so every engine cuts the same shards.
`--shard I/N` takes the images whose digest falls in slice I of N: slices never overlap, so N
jobs started at different times never encode one image twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.features.store import ShardContents, write_shard
from datasets.image_hash import difference_hash
from datasets.images import DEFAULT_MAX_PIXELS, ImageError, resized_image
from datasets.prefetch import prefetched

log = logging.getLogger(__name__)

SHARD_IMAGES = 512  # ~11 MB of float16 features at the default encoder's 10,824 dims
_DECODE_AHEAD = 64  # decoded images waiting for the network: bounds memory
# Images a lane decodes before it encodes them one call at a time: each network pass evicts the
# core's caches, so decoding a few in a row starts cold once, not every image (docs/benchmarks.md,
# twelfth session).
_LANE_RUN = 8

Encoder = Callable[[np.ndarray], np.ndarray]  # uint8 [n, H, W, 3] -> features [n, dim]


@dataclass(frozen=True)
class ShardTask:
    encoder: str
    name: str
    digests: tuple[str, ...]
    paths: tuple[str, ...]


@dataclass(frozen=True)
class ShardResult:
    name: str
    images: int
    usable: int
    seconds: float
    skipped: bool  # the file was already there


def slice_of(digest: str, count: int) -> int:
    """Which of `count` slices an image belongs to, by its digest."""
    return int(digest[:15], 16) % count


def plan_shards(
    encoder: str,
    items: Sequence[tuple[str, str]],
    part: tuple[int, int] | None = None,
    shard_images: int = SHARD_IMAGES,
) -> list[ShardTask]:
    """Shards of the (digest, path) `items` (one path per digest), only slice `part` = (I, N) if given."""
    chosen = {}
    for digest, path in items:
        if part is None or slice_of(digest, part[1]) == part[0]:
            chosen.setdefault(digest, str(path))
    ordered = sorted(chosen)
    tasks = []
    for start in range(0, len(ordered), shard_images):
        digests = tuple(ordered[start : start + shard_images])
        name = hashlib.sha256(("\n".join((encoder, *digests))).encode()).hexdigest()[:24]
        tasks.append(ShardTask(encoder, name, digests, tuple(chosen[d] for d in digests)))
    return tasks


def encode_shard(
    task: ShardTask,
    encoder: Encoder | Sequence[Encoder],
    size: tuple[int, int],
    dim: int,
    shard_path: os.PathLike,
    batch: int = 16,
    threads: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dtype: str = "float16",
) -> ShardResult:
    """Decode, encode and write the shard's one file (nothing to do when it is already there)."""
    if os.path.exists(shard_path):
        return skipped_shard(task)
    started = time.perf_counter()
    contents = shard_contents(task, encoder, size, dim, batch, threads, max_pixels, dtype)
    write_shard(Path(shard_path), contents)
    return encoded_shard(task, contents, started)


def skipped_shard(task: ShardTask) -> ShardResult:
    """The result for a shard whose file was already there."""
    return ShardResult(task.name, len(task.digests), 0, 0.0, True)


def encoded_shard(task: ShardTask, contents: ShardContents, started: float) -> ShardResult:
    """The result for a shard encoded since `started` (time.perf_counter())."""
    return ShardResult(task.name, len(task.digests), int(contents.usable.sum()),
                       time.perf_counter() - started, False)


def shard_contents(
    task: ShardTask,
    encoder: Encoder | Sequence[Encoder],
    size: tuple[int, int],
    dim: int,
    batch: int = 16,
    threads: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    dtype: str = "float16",
) -> ShardContents:
    """Decode and encode the shard's images: what its file holds.

    One encoder (a multi-threaded network, Keras on a GPU): `threads` decode ahead while it runs.
    Several (lanes, e.g. one single-threaded LiteRT interpreter per core): each lane decodes and
    encodes batches of its own, so decoding on one core never stalls the network on another
    (a multi-threaded network waits at every layer for its slowest thread).
    """
    n = len(task.digests)
    features = np.zeros((n, dim), np.dtype(dtype))
    usable = np.zeros(n, bool)
    dhash = np.zeros(n, np.int64)
    problems = [""] * n

    def decode(i: int):
        try:
            image = resized_image(task.paths[i], size, max_pixels)
            # The hash from the Pillow image: its grey levels come from Pillow's C (image_hash.py).
            return i, np.asarray(image, np.uint8), difference_hash(image), ""
        except ImageError as err:
            # Asked only of images that fail: one call per image costs a round trip each on a
            # shared filesystem, while the lanes wait.
            if not os.access(task.paths[i], os.R_OK):
                # Not a broken image: a worker that does not see the files. It must not be stored.
                raise FileNotFoundError(f"{socket.gethostname()} cannot read {task.paths[i]}: the images "
                                        "must be on a filesystem every worker sees") from None
            return i, None, 0, str(err)

    def encode(network: Encoder, decoded: Iterable[tuple]) -> None:
        """Encode `decoded` in batches, keeping each image's row, hash and problem."""
        pending: list[tuple[int, np.ndarray]] = []
        for i, pixels, digest, problem in decoded:
            if pixels is None:
                problems[i] = problem
                continue
            usable[i], dhash[i] = True, digest
            if batch == 1:  # a LiteRT lane: a view, not a stacked copy of every image
                features[i] = network(pixels[None])[0]
                continue
            pending.append((i, pixels))
            if len(pending) == batch:
                features[[j for j, _ in pending]] = network(np.stack([p for _, p in pending]))
                pending.clear()
        if pending:
            features[[j for j, _ in pending]] = network(np.stack([p for _, p in pending]))

    lanes = [encoder] if callable(encoder) else list(encoder)
    if len(lanes) == 1:
        encode(lanes[0], prefetched(decode, range(n), _DECODE_AHEAD, max(1, threads)))
    else:
        # A list, not a map: the run is decoded whole before its first network call.
        _run_lanes(lanes, n, max(batch, _LANE_RUN),
                   lambda network, rows: encode(network, [decode(i) for i in rows]))
    return ShardContents(np.array(task.digests), features, usable, dhash, np.array(problems))


def _run_lanes(lanes: Sequence[Encoder], n: int, batch: int,
               work: Callable[[Encoder, range], None]) -> None:
    """`work(lane, rows)` over consecutive runs of up to `batch` rows of `n`, each lane taking the
    next run when it is free; runs shrink near the end, so that no lane idles for long while another
    finishes a whole run. An error (or an interrupt here) stops every lane after its current run."""
    taken = 0
    lock, stop = threading.Lock(), threading.Event()

    def lane(network: Encoder) -> None:
        nonlocal taken
        while not stop.is_set():
            with lock:
                first = taken
                taken = last = min(n, first + max(1, min(batch, (n - first) // (2 * len(lanes)))))
            if first >= n:
                return
            work(network, range(first, last))

    with ThreadPoolExecutor(len(lanes)) as pool:
        running = [pool.submit(lane, network) for network in lanes]
        try:
            for future in running:
                future.result()
        finally:
            stop.set()
