"""The feature store at catalog scale, each figure beside today's path in the same run; prints JSON.

usage: python benchmarks/catalog_scale.py DATA_DIR [--images 1024] [--work DIR] [--throughput-rounds 3]
                                          [--parts throughput,incremental,kill,ray,ray-cluster,synthetic,
                                                   queries,stored-queries,digests,one-lane]
                                          [--synthetic-images 100000,1000000] [--synthetic-dim 1024]

DATA_DIR is an image dataset with manifest.csv (`../shared/data/icon_themes.py`). Parts:
- throughput: frozen encoding end to end (decoding included) of the first --images images at the
  default 320 px: today's path (`training.feature_cache.encode_all`, the Keras backbone), the store's
  local engine (LiteRT, a fresh store), and the bare LiteRT network on images decoded beforehand
  (just before and just after the store's run, at the mean of the two); --throughput-rounds rounds
  of the three in turn, each round's ratios in its own window, reported with their medians.
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

The parts live beside this script: scale_encoding.py (throughput, one-lane, digests), scale_store.py
(incremental, kill, ray, ray-cluster), scale_queries.py and scale_synthetic.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402
from scale_encoding import converted_encoder, digest_rates, manifest_paths, one_lane_writes, throughput  # noqa: E402
from scale_queries import catalog_queries, stored_queries  # noqa: E402
from scale_store import incremental, kill_and_rerun, ray_cluster, ray_engine  # noqa: E402
from scale_synthetic import synthetic, synthetic_child  # noqa: E402


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
        results["throughput"] = throughput(paths, spec, args.work, args.throughput_rounds)
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
    parser.add_argument("--throughput-rounds", type=int, default=3)
    parser.add_argument("--parts", default="throughput,incremental,kill,ray,ray-cluster,synthetic,queries")
    parser.add_argument("--synthetic-images", default="100000,1000000")
    parser.add_argument("--synthetic-dim", type=int, default=1024)
    parser.add_argument("--query-titles", type=int, default=10_000)
    parser.add_argument("--query-exemplars", type=int, default=1_000_000)
    args = parser.parse_args()
    if args.throughput_rounds < 1:
        sys.exit(f"error: --throughput-rounds {args.throughput_rounds}: at least one round is needed")
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
                "machine": machine(),
                "data": str(args.data_dir),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
