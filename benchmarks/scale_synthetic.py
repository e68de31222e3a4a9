"""catalog_scale.py's synthetic part: a store of generated features written and gathered back,
each size in a fresh process (`catalog_scale.py --synthetic-child`), its peak memory sampled."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from datasets.features.store import FeatureStore, ShardContents, write_shard

REPO = Path(__file__).resolve().parents[1]
CHILD = Path(__file__).with_name("catalog_scale.py")  # puts the repository on sys.path, then calls the child
SYNTHETIC_CHUNK = 65_536  # digests asked of the store at a time


def status_kb(field: str, pid: int | str = "self") -> int:
    """A process's `field` of /proc/PID/status (VmHWM, RssAnon, ...) in kB."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


def synthetic_child(root: Path, images: int, dim: int) -> dict:
    """Write `images` generated feature rows in shards of 512, then gather them all into a memmap.
    Peak anonymous memory is sampled every 20 ms: the total RSS also counts the pages of the
    memory-mapped output, which the kernel writes back and drops as it needs."""
    peak_anon = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak_anon[0] = max(peak_anon[0], status_kb("RssAnon"))

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
        peak_anon[0] = max(peak_anon[0], status_kb("RssAnon"))
    done.set()
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a child would report its parent's.
    peak_mb = status_kb("VmHWM") / 1024
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
            [sys.executable, str(CHILD), "--synthetic-child", str(root), str(images), str(dim)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout))
        shutil.rmtree(root, ignore_errors=True)
    return results


