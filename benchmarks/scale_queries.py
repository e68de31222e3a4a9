"""catalog_scale.py's query parts: a bundle grown to catalog size (generated exemplars), its warm
queries and an enroll into it; and the batch query path with and without the store."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scale_encoding import SIZE, manifest_paths

from datasets.images import load_resized

REPO = Path(__file__).resolve().parents[1]


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


