"""Query speed: the cold CLI against a naive Keras path, warm embeddings, and top-10 title search.

usage: python benchmarks/query.py [--bundle DIR] [--image PNG] [--runs 7] [--sizes 10000,100000,1000000]

Prints one JSON document. Every figure is a median over repeated runs, all in the same run:
- cold CLI: `python -m inference.similar IMAGE --top-k 10` in a fresh process (LiteRT and numpy);
- naive cold: a fresh process that imports Keras, loads model.keras, predicts and ranks with numpy;
- warm embedding: one image through an open StyleFinder (decode, resize, model), and the model alone;
- search: exact top-10 over N unit vectors of the bundle's dimension, clustered like real title
  embeddings (around N/100 random centres), queried with slightly perturbed catalog vectors; and,
  up to --hnsw-max titles, usearch's HNSW graph (build time, query time, recall@10 against exact).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from inference.query import DEMO_BUNDLE, StyleFinder  # noqa: E402
from inference.search import ApproximateIndex, ExactIndex  # noqa: E402

NAIVE = """
import sys, numpy as np
from PIL import Image
from models.saving import load_model
from inference.bundle import Bundle
bundle = Bundle.load(sys.argv[1])
model = load_model(bundle.keras_path, compile=False)
h, w = bundle.image_size
image = np.asarray(Image.open(sys.argv[2]).convert("RGB").resize((w, h)), np.float32)[None] / 255.0
embedding = model.predict(image, verbose=0)["embedding"][0]
print(np.argsort(-(bundle.title_embeddings @ embedding))[:10])
"""


def timed_process(command: list[str], runs: int) -> dict:
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        seconds.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(seconds), 4), "min_s": round(min(seconds), 4), "runs": runs}


def median_ms(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return round(1000 * statistics.median(times), 3)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def search_figures(dim: int, sizes: list[int], hnsw_max: int, queries: int = 50) -> dict:
    rng = np.random.default_rng(0)
    figures = {}
    for size in sizes:
        # Unclustered random vectors are HNSW's worst case and unlike real embeddings; cluster them.
        centres = unit(rng.standard_normal((max(1, size // 100), dim), dtype=np.float32))
        vectors = unit(centres[rng.integers(0, len(centres), size)]
                       + rng.standard_normal((size, dim), dtype=np.float32) * (0.6 / np.sqrt(dim)))
        probes = unit(vectors[rng.integers(0, size, queries)]
                      + rng.standard_normal((queries, dim), dtype=np.float32) * (0.1 / np.sqrt(dim)))
        exact = ExactIndex(vectors)
        times = []
        for probe in probes:
            start = time.perf_counter()
            exact.search(probe[None], 10)
            times.append(time.perf_counter() - start)
        entry = {"exact_top10_ms": round(1000 * statistics.median(times), 3)}
        if size > hnsw_max:
            figures[str(size)] = entry
            continue
        try:
            start = time.perf_counter()
            approximate = ApproximateIndex(vectors)
            entry["hnsw_build_s"] = round(time.perf_counter() - start, 2)
            times, recall = [], []
            for probe in probes:
                start = time.perf_counter()
                rows, _ = approximate.search(probe[None], 10)
                times.append(time.perf_counter() - start)
                recall.append(len(set(rows[0]) & set(exact.search(probe[None], 10)[0][0])) / 10)
            entry["hnsw_top10_ms"] = round(1000 * statistics.median(times), 3)
            entry["hnsw_recall_at_10"] = round(float(np.mean(recall)), 3)
        except ImportError:
            entry["hnsw"] = "usearch not installed"
        figures[str(size)] = entry
        del vectors, exact
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=DEMO_BUNDLE)
    parser.add_argument("--image", type=Path,
                        default=next((REPO / "examples" / "icons" / "tango" / "tango").glob("*.png")))
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--hnsw-max", type=int, default=100_000,
                        help="build HNSW graphs up to this many titles (1M takes minutes on 2 cores)")
    args = parser.parse_args()
    env_python = sys.executable
    cold = timed_process([env_python, "-m", "inference.similar", str(args.image), "--bundle",
                          str(args.bundle), "--top-k", "10"], args.runs)
    naive = timed_process([env_python, "-c", NAIVE, str(args.bundle), str(args.image)],
                          max(3, args.runs // 2))
    finder = StyleFinder(args.bundle)
    finder.query([args.image])
    size = finder.bundle.image_size
    pixels = np.random.default_rng(0).random((1, *size, 3), dtype=np.float32)
    warm = {"query_ms": median_ms(lambda: finder.query([args.image], 10), 200),
            "model_only_ms": median_ms(lambda: finder.runner(pixels), 200)}
    print(json.dumps({
        "benchmark": "query",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "bundle": {"path": str(args.bundle), "image_size": list(size), "titles": len(finder.bundle.titles),
                   "embedding_dim": int(finder.bundle.title_embeddings.shape[1]),
                   "tflite_bytes": sum(p.stat().st_size for p in finder.bundle.litert_files())},
        "cold_cli": cold,
        "naive_keras_cold": naive,
        "cold_speedup": round(naive["median_s"] / cold["median_s"], 1),
        "warm": warm,
        "search": search_figures(int(finder.bundle.title_embeddings.shape[1]),
                                 [int(s) for s in args.sizes.split(",")], args.hnsw_max),
    }, indent=2))


if __name__ == "__main__":
    main()
