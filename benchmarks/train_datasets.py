"""Train and evaluate on a style dataset's name split, beside the prior and a frozen probe; print JSON.

usage: python benchmarks/train_datasets.py DATA_DIR [--work DIR] [--runs default,icons_style]
                                          [--probe] [--val-from-names] [--set KEY=VALUE ...]

DATA_DIR is the output of `../shared/data/icon_themes.py` or `../shared/data/font_styles.py`. The split is
the reference one, `../shared/data/split_by_name.py DATA_DIR`: test content (icon names, characters) is
unseen in training, its titles and authors are seen. Each run trains with `python -m training.train
--manifest train.csv --image-root DATA_DIR` as a new user would ("default" is no preset; other names are
presets), with a fresh cache folder, so its time includes decoding or encoding, validation and the bundle
export. Without --val-from-names the trainer carves its own validation share; with it, a tenth of the
training names is held out as validation, as `benchmarks/train_icons.py` used to. Each bundle is scored
on test.csv with `python -m training.evaluate`. --probe adds the issue's reference probe, measured in the
same run: frozen EfficientNet-Lite0 at 128x128, Gram matrices of block groups 2-4, standardised, into a
scikit-learn logistic regression (C=0.1).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from machine import machine

REPO = Path(__file__).resolve().parents[1]
SPLIT_SCRIPT = REPO.parent / "shared" / "data" / "split_by_name.py"
KEYS = ("author_top1", "prior_author_top1", "author_top3", "author_macro_f1", "title_hit1", "title_hit10",
        "title_mrr", "prior_title_hit1", "genre_micro_f1", "prior_genre_micro_f1", "genre_macro_f1",
        "prior_genre_macro_f1", "genre_map", "prior_genre_map")


def content_name(row: dict) -> str:
    """What an image shows, shared across titles: the icon name or the character."""
    return row["image"].rsplit("__", 1)[1]


def prepare(data_dir: Path, work: Path, val_from_names: bool, seed: int = 0) -> dict[str, Path]:
    subprocess.run([sys.executable, str(SPLIT_SCRIPT), str(data_dir)], check=True, capture_output=True)
    paths = {"train": data_dir / "train.csv", "test": data_dir / "test.csv"}
    if not val_from_names:
        return paths
    with open(paths["train"], newline="") as f:
        rows = list(csv.DictReader(f))
    names = sorted({content_name(r) for r in rows})
    random.Random(seed).shuffle(names)
    val_names = set(names[: int(len(names) * 0.1)])
    work.mkdir(parents=True, exist_ok=True)
    for split in ("fit", "val"):
        paths[split] = work / f"{split}.csv"
        with open(paths[split], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "title", "author", "genres"])
            writer.writeheader()
            writer.writerows(r for r in rows if (content_name(r) in val_names) == (split == "val"))
    return paths


def run_training(name: str, paths: dict[str, Path], data_dir: Path, work: Path, extra: list[str]) -> dict:
    cache = work / "cache" / name
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "STYLEFINDER_CACHE": str(cache / "weights")}
    command = [sys.executable, "-m", "training.train", "--name", name, "--out-dir", str(work / "runs"),
               "--image-root", str(data_dir), "--quiet", "--set", f"data.cache_dir={cache}", *extra]
    command += (["--manifest", str(paths["fit"]), "--val-manifest", str(paths["val"])] if "fit" in paths
                else ["--manifest", str(paths["train"])])
    if name != "default":
        command += ["--preset", name]
    start = time.perf_counter()
    trained = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if trained.returncode:
        return {"error": trained.stderr.strip().splitlines()[-1:], "train_seconds": round(seconds, 1)}
    evaluated = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle",
                                str(work / "runs" / name / "bundle"), "--manifest", str(paths["test"]),
                                "--image-root", str(data_dir), "--json"], cwd=REPO, capture_output=True,
                               text=True, env=env, check=True)
    metrics = json.loads(evaluated.stdout)
    log = trained.stdout.splitlines() + trained.stderr.splitlines()
    epochs = [line for line in log if line.startswith("epoch ")]
    return {"train_seconds": round(seconds, 1), "epochs_run": len(epochs),
            "last_epoch_log": epochs[-1] if epochs else None,
            **{k: round(metrics[k], 4) for k in KEYS if k in metrics}}


def frozen_probe(paths: dict[str, Path], data_dir: Path) -> dict:
    """The issue's floor: frozen Lite0 Gram features of groups 2-4 at 128x128 -> logistic regression."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from datasets.images import load_resized
    from models.registry import create_backbone

    backbone = create_backbone("efficientnet_lite0", input_shape=(128, 128, 3),
                               style_taps=("group2", "group3", "group4"), gram_channels=None)
    start = time.perf_counter()
    features, authors = {}, {}
    for split in ("train", "test"):
        with open(paths[split], newline="") as f:
            rows = list(csv.DictReader(f))
        chunks = []
        for first in range(0, len(rows), 256):
            batch = rows[first:first + 256]
            images = np.stack([load_resized(data_dir / r["image"], (128, 128)) for r in batch])
            chunks.append(backbone.predict(images.astype(np.float32) / 255.0, verbose=0, batch_size=64))
        features[split], authors[split] = np.concatenate(chunks), np.array([r["author"] for r in rows])
    scaler = StandardScaler().fit(features["train"])
    probe = LogisticRegression(C=0.1, max_iter=300).fit(scaler.transform(features["train"]), authors["train"])
    predicted = probe.predict(scaler.transform(features["test"]))
    return {"author_top1": round(float(np.mean(predicted == authors["test"])), 4),
            "seconds": round(time.perf_counter() - start, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("data/bench-train"))
    parser.add_argument("--runs", default="default",
                        help="comma-separated: default (no preset) or presets; empty for the probe alone")
    parser.add_argument("--probe", action="store_true", help="also the frozen logistic-regression probe")
    parser.add_argument("--val-from-names", action="store_true",
                        help="hold out a tenth of the training names as validation instead of carving")
    parser.add_argument("--set", action="append", default=[], help="passed to every training run")
    args = parser.parse_args()
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py "
                 "or font_styles.py")
    paths = prepare(args.data_dir, args.work, args.val_from_names)
    extra = [item for s in args.set for item in ("--set", s)]
    results = {name: run_training(name, paths, args.data_dir, args.work, extra)
               for name in args.runs.split(",") if name}
    if args.probe:
        results["frozen_probe"] = frozen_probe(paths, args.data_dir)
    print(json.dumps({
        "benchmark": "train_datasets",
        "dataset": args.data_dir.name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "split": "split_by_name.py (seed 7, 20% of names in test); validation "
                 + ("a tenth of the training names" if args.val_from_names else "carved by the trainer"),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
