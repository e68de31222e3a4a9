"""Train and evaluate models on the icon-theme dataset's name split; print one JSON document.

usage: python benchmarks/train_icons.py DATA_DIR [--work DIR] [--presets icons_webtoon,icons_style]
                                     [--by-title icons_style]

DATA_DIR is the output of `../shared/data/icon_themes.py DATA_DIR`. The split is the reference one,
`../shared/data/split_by_name.py DATA_DIR` (icon names in test are unseen; titles and authors are
seen). A tenth of the training icon names is held out, by name, as validation. Each preset trains
with `python -m training.train` and is scored on test.csv with `python -m training.evaluate`;
the prior (the most frequent training author) comes from the same run. With --by-title, the preset
is also trained on a split that holds whole titles out, to see whether it names the author of a
title it has never seen.
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
        "title_mrr", "prior_title_hit1", "genre_micro_f1", "genre_map")


def icon_name(row: dict) -> str:
    return row["image"].rsplit("__", 1)[1]


def prepare(data_dir: Path, work: Path, val_share: float = 0.1, seed: int = 0,
            fit_includes_val: bool = False) -> tuple[Path, Path, Path]:
    subprocess.run([sys.executable, str(SPLIT_SCRIPT), str(data_dir)], check=True, capture_output=True)
    with open(data_dir / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = sorted({icon_name(r) for r in rows})
    random.Random(seed).shuffle(names)
    val_names = set(names[: int(len(names) * val_share)])
    work.mkdir(parents=True, exist_ok=True)
    paths = {}
    for split in ("fit", "val"):
        paths[split] = work / f"{split}.csv"
        with open(paths[split], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "title", "author", "genres"])
            writer.writeheader()
            writer.writerows(r for r in rows if (icon_name(r) in val_names) == (split == "val")
                             or (split == "fit" and fit_includes_val))
    return paths["fit"], paths["val"], data_dir / "test.csv"


def run_preset(preset: str, fit: Path, val: Path, test: Path, data_dir: Path, work: Path,
               extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "training.train", "--preset", preset, "--name", preset,
               "--out-dir", str(work / "runs"), "--manifest", str(fit), "--val-manifest", str(val),
               "--image-root", str(data_dir), "--quiet", *extra]
    start = time.perf_counter()
    trained = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if trained.returncode:
        return {"error": trained.stderr.strip().splitlines()[-1:], "train_seconds": round(seconds, 1)}
    bundle = work / "runs" / preset / "bundle"
    evaluated = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle", str(bundle),
                                "--manifest", str(test), "--json"], cwd=REPO, capture_output=True,
                               text=True, env=env, check=True)
    metrics = json.loads(evaluated.stdout)
    epochs = [line for line in trained.stdout.splitlines() + trained.stderr.splitlines()
              if line.startswith("epoch ")]
    return {"train_seconds": round(seconds, 1), "epochs_run": len(epochs),
            "last_epoch_log": epochs[-1] if epochs else None,
            **{k: round(metrics[k], 4) for k in KEYS if k in metrics}}


def run_by_title(preset: str, data_dir: Path, work: Path, extra: list[str]) -> dict:
    """Whole titles held out (`datasets split --by title`): can the model name the author of a theme
    it has never seen? Test titles' authors all have other titles in training."""
    catalog = str(work / "by_title.sqlite")
    steps = [["import", str(data_dir / "manifest.csv"), "--catalog", catalog, "--quiet"],
             ["split", "--catalog", catalog, "--by", "title", "--min-images", "40"],
             ["export", "--catalog", catalog, "--split", "test", "--out", str(work / "by_title_test.csv")]]
    for step in steps:
        subprocess.run([sys.executable, "-m", "datasets", *step], cwd=REPO, check=True, capture_output=True)
    name = f"{preset}_by_title"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "training.train", "--preset", preset, "--name", name, "--out-dir",
                    str(work / "runs"), "--catalog", catalog, "--quiet", *extra], cwd=REPO, check=True,
                   capture_output=True)
    seconds = time.perf_counter() - start
    evaluated = subprocess.run([sys.executable, "-m", "training.evaluate", "--bundle",
                                str(work / "runs" / name / "bundle"), "--manifest",
                                str(work / "by_title_test.csv"), "--json"], cwd=REPO, capture_output=True,
                               text=True, check=True)
    metrics = json.loads(evaluated.stdout)
    with open(work / "by_title_test.csv", newline="") as f:
        test_titles = sorted({r["title"] for r in csv.DictReader(f)})
    keys = ("author_top1", "prior_author_top1", "author_top3", "author_macro_f1", "author_titles_hit1",
            "author_titles_hit10", "author_titles_mrr", "prior_author_titles_hit1")
    return {"test_titles": test_titles, "train_seconds": round(seconds, 1),
            **{k: round(metrics[k], 4) for k in keys if k in metrics}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("data/bench-train"))
    parser.add_argument("--presets", default="icons_webtoon,icons_style")
    parser.add_argument("--set", action="append", default=[], help="passed to every training run")
    parser.add_argument("--by-title", metavar="PRESET", help="also train PRESET on a --by title split")
    parser.add_argument("--fit-includes-val", action="store_true",
                        help="train on the validation names too (validation figures and the checkpoint "
                             "choice are then optimistic; test figures stay honest)")
    args = parser.parse_args()
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py")
    fit, val, test = prepare(args.data_dir, args.work, fit_includes_val=args.fit_includes_val)
    extra = [item for s in args.set for item in ("--set", s)]
    results = {p: run_preset(p, fit, val, test, args.data_dir, args.work, extra)
               for p in args.presets.split(",")}
    if args.by_title:
        results[f"{args.by_title} (by title)"] = run_by_title(args.by_title, args.data_dir, args.work, extra)
    print(json.dumps({
        "benchmark": "train_icons",
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "split": "split_by_name.py (seed 7, 20% of icon names in test); 10% of training names as val"
                 + (", also trained on" if args.fit_includes_val else ""),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
