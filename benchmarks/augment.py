"""Balanced augmentation against the naive in-memory approach, printed as one JSON document.

usage: python benchmarks/augment.py DATA_DIR [--per-label 10000] [--sizes 64x64,21x35]

DATA_DIR is the output of `../shared/data/icon_themes.py DATA_DIR`; its titles are the labels.
For each size, two fresh processes run one after the other on the same images:
- ours: `BalancedStream`, decoding into a fresh cache, then two epochs of the tf.data stream;
- naive: every image loaded with PIL into one numpy array, then every sample augmented with PIL
  into one preallocated in-memory array (the approach the webtoon study ran out of memory with);
- train_step: training steps of the default model (style_cnn) at that size, for comparison.
Both streams draw per_label samples per label and report images/s, peak RSS and per-label counts.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from machine import machine  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_titles(data_dir: Path) -> tuple[list[Path], list[str]]:
    with open(data_dir / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [data_dir / r["image"] for r in rows], [r["title"] for r in rows]


def run_ours(data_dir: Path, size: tuple[int, int], per_label: int, batch_size: int) -> dict:
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()
    from datasets.config import BalanceConfig
    from datasets.pipeline import BalancedStream
    from datasets.sampling import LabelledImages

    paths, titles = read_titles(data_dir)
    data = LabelledImages(tuple(paths), tuple((t,) for t in titles), "title")
    baseline = rss_mb()
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        stream = BalancedStream(data, BalanceConfig(label="title", per_label=per_label, image_size=size,
                                                    batch_size=batch_size), cache_dir=cache, progress=False)
        decode_seconds = time.perf_counter() - start
        counts: Counter[int] = Counter()
        epoch_seconds = []
        mark = time.perf_counter()
        for step, (_, targets, _) in enumerate(stream.dataset(2), start=1):
            if step <= stream.steps_per_epoch:
                counts.update(targets.numpy().tolist())
            if step % stream.steps_per_epoch == 0:
                epoch_seconds.append(time.perf_counter() - mark)
                mark = time.perf_counter()
    samples = stream.sampler.epoch_size
    return {
        "images_per_second_first_epoch": round(samples / (decode_seconds + epoch_seconds[0])),
        "images_per_second_steady": round(samples / epoch_seconds[1]),
        "decode_seconds": round(decode_seconds, 2),
        "epoch_seconds": [round(s, 2) for s in epoch_seconds],
        "samples_per_epoch": samples,
        "rss_after_imports_mb": round(baseline),
        "peak_rss_mb": round(peak_mb()),
        "counts": {stream.label_names[k]: v for k, v in sorted(counts.items())},
    }


def run_naive(data_dir: Path, size: tuple[int, int], per_label: int) -> dict:
    from PIL import Image, ImageEnhance

    from datasets.images import DEFAULT_MAX_PIXELS, load_resized

    paths, titles = read_titles(data_dir)
    names = sorted(set(titles))
    label = np.array([names.index(t) for t in titles])
    baseline = rss_mb()
    start = time.perf_counter()
    originals = np.stack([load_resized(p, size, DEFAULT_MAX_PIXELS) for p in paths])
    rng = np.random.default_rng(0)
    slots = rng.permutation(np.repeat(np.arange(len(names)), per_label))
    members = [np.flatnonzero(label == i) for i in range(len(names))]
    height, width = size
    out = np.empty((len(slots), height, width, 3), np.uint8)  # the whole augmented set, in memory
    for i, slot in enumerate(slots):
        u = rng.random(7)
        image = Image.fromarray(originals[rng.choice(members[slot])])
        if u[0] < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        image = image.rotate((u[1] * 2 - 1) * 10, resample=Image.Resampling.BILINEAR,
                             translate=((u[2] * 2 - 1) * 0.1 * width, (u[3] * 2 - 1) * 0.1 * height),
                             fillcolor=(255, 255, 255))
        scale = 1 + u[4] * 0.1  # zoom in by cropping the centre
        box = (width * (1 - 1 / scale) / 2, height * (1 - 1 / scale) / 2,
               width * (1 + 1 / scale) / 2, height * (1 + 1 / scale) / 2)
        image = image.resize((width, height), Image.Resampling.BILINEAR, box=box)
        image = ImageEnhance.Brightness(image).enhance(1 + (u[5] * 2 - 1) * 0.1)
        out[i] = np.asarray(ImageEnhance.Contrast(image).enhance(1 + (u[6] * 2 - 1) * 0.1))
    seconds = time.perf_counter() - start
    counts = Counter(slots.tolist())
    return {
        "images_per_second": round(len(slots) / seconds),
        "seconds": round(seconds, 2),
        "samples": len(slots),
        "array_mb": round(out.nbytes / 2**20),
        "rss_after_imports_mb": round(baseline),
        "peak_rss_mb": round(peak_mb()),
        "counts": {names[k]: v for k, v in sorted(counts.items())},
    }


def run_train_step(size: tuple[int, int], labels: int, batch_size: int, steps: int = 20) -> dict:
    """Images/s of training steps of the default model (style_cnn) on in-memory batches."""
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow()
    import keras

    from models.registry import create_backbone
    from models.style_model import StyleModel

    keras.utils.set_random_seed(0)
    model = StyleModel(create_backbone("style_cnn", input_shape=(*size, 3)), num_authors=labels,
                       num_titles=labels)
    model.compile(optimizer="adam", loss={"author": "sparse_categorical_crossentropy",
                                          "title": "sparse_categorical_crossentropy"})
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, *size, 3), dtype=np.float32)
    y = {"author": rng.integers(0, labels, batch_size), "title": rng.integers(0, labels, batch_size)}
    model.train_on_batch(x, y)  # build and compile the step
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return {"model": "style_cnn", "batch_size": batch_size,
            "images_per_second": round(steps * batch_size / (time.perf_counter() - start))}


def worker(args: argparse.Namespace) -> None:
    size = tuple(int(v) for v in args.size.split("x"))
    if args.worker == "ours":
        result = run_ours(args.data_dir, size, args.per_label, args.batch_size)
    elif args.worker == "train_step":
        result = run_train_step(size, len(set(read_titles(args.data_dir)[1])), 64)
    else:
        result = run_naive(args.data_dir, size, args.per_label)
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--per-label", type=int, default=10_000)
    parser.add_argument("--sizes", default="64x64,21x35", help="HEIGHTxWIDTH list (35x21 is 21x35)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--worker", choices=("ours", "naive", "train_step"), help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py")
    if args.worker:
        worker(args)
        return
    results = {}
    for size in args.sizes.split(","):
        results[size] = {}
        for kind in ("ours", "naive", "train_step"):
            command = [sys.executable, __file__, str(args.data_dir), "--worker", kind, "--size", size,
                       "--per-label", str(args.per_label), "--batch-size", str(args.batch_size)]
            done = subprocess.run(command, capture_output=True, text=True, check=True,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
            results[size][kind] = json.loads(done.stdout.strip().splitlines()[-1])
        ours, naive = results[size]["ours"], results[size]["naive"]
        counts = list(ours["counts"].values())
        naive_speed = naive["images_per_second"]
        results[size]["comparison"] = {
            "speedup_first_epoch": round(ours["images_per_second_first_epoch"] / naive_speed, 2),
            "speedup_steady": round(ours["images_per_second_steady"] / naive_speed, 2),
            "peak_rss_ratio": round(ours["peak_rss_mb"] / naive["peak_rss_mb"], 3),
            "rss_growth_ratio": round((ours["peak_rss_mb"] - ours["rss_after_imports_mb"])
                                      / (naive["peak_rss_mb"] - naive["rss_after_imports_mb"]), 3),
            "ours_counts_exact": min(counts) == max(counts) == args.per_label,
            "iterator_over_train_step": round(ours["images_per_second_steady"]
                                              / results[size]["train_step"]["images_per_second"], 1),
        }
    _, titles = read_titles(args.data_dir)
    per_title = Counter(titles)
    factor = args.per_label * len(per_title) / len(titles)
    print(json.dumps({
        "benchmark": "augment",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "labels": len(per_title),
        "images": len(titles),
        "per_label": args.per_label,
        "study_uniform_factor_counts": {"factor": round(factor, 2),
                                        "min": round(min(per_title.values()) * factor),
                                        "max": round(max(per_title.values()) * factor)},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
