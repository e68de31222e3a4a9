"""catalog_scale.py's store parts: incremental runs, a kill and its rerun, the Ray engine against
local, and a two-node Ray cluster with a worker killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scale_encoding import fresh_store, timed_store_run

from datasets.features.digests import content_digests
from datasets.features.store import FeatureStore

REPO = Path(__file__).resolve().parents[1]


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


