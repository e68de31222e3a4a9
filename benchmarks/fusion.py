"""Genres from poster and synopsis together: train both default models, fuse, print one JSON document.

usage: python benchmarks/fusion.py DIR [--work DIR] [--image-preset NAME] [--reuse]

DIR is the output of `benchmarks/appstream_apps.py` (train/val/test.csv with id, group, image,
title, author, genres, text, lang). As a user would:
1. the image model: `python -m training.train --manifest train.csv --val-manifest val.csv
   --label genres` on the English rows (one row per icon), the default recognizer;
2. the text model: `python -m training.train_text ... --bundle` into that bundle, which chooses
   the fusion weight on validation and records whether fusion is on;
3. on the test rows (English and Korean, each with its icon): macro/micro mAP and P@1 of the
   image alone, the text alone, the fusion at the chosen weight, and the prior, all over the
   text model's genres. `fused_minus_best_single` is what the target asks of.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from machine import machine

REPO = Path(__file__).resolve().parents[1]


def image_manifests(data: Path, work: Path) -> dict[str, Path]:
    """English rows only: one row per icon (Korean rows repeat the same icons)."""
    paths = {}
    for split in ("train", "val"):
        with open(data / f"{split}.csv", newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if r["lang"] == "en"]
        paths[split] = work / f"images_{split}.csv"
        with open(paths[split], "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "title", "author", "genres"])
            writer.writeheader()
            writer.writerows({k: r[k] for k in ("image", "title", "author", "genres")} for r in rows)
    return paths


def run(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], cwd=REPO, check=True, stdout=sys.stderr)
    return round(time.perf_counter() - started, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--work", type=Path, help="runs and caches (default: DIR/fusion_work)")
    parser.add_argument("--image-preset", help="image training preset (default: the default recognizer)")
    parser.add_argument("--reuse", action="store_true", help="keep an image bundle trained before")
    parser.add_argument("--image-set", action="append", default=["train.refit_with_val=false"],
                        help="image config overrides (default: no refit on validation, so that validation "
                             "can choose the fusion weight)")
    args = parser.parse_args()
    data = args.data.resolve()
    work = (args.work or data / "fusion_work").resolve()
    work.mkdir(parents=True, exist_ok=True)
    bundle = work / "runs" / "images" / "bundle"
    out: dict = {"data": str(data)}
    if not (args.reuse and (bundle / "bundle.json").is_file()):
        paths = image_manifests(data, work)
        command = ["training.train", "--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]),
                   "--image-root", str(data), "--label", "genres", "--out-dir", str(work / "runs"),
                   "--name", "images", "--quiet"]
        preset = ["--preset", args.image_preset] if args.image_preset else []
        resume = ["--resume"] if (work / "runs" / "images").is_dir() else []  # a run stopped earlier
        overrides = [item for value in args.image_set for item in ("--set", value)]
        out["image_train_seconds"] = run([*command, *preset, *resume, *overrides])
    out["text_train_seconds"] = run(["training.train_text", "--manifest", str(data / "train.csv"),
                                     "--val-manifest", str(data / "val.csv"), "--test-manifest",
                                     str(data / "test.csv"), "--bundle", str(bundle), "--out-dir",
                                     str(work / "runs"), "--name", "text", "--store", str(work / "store"),
                                     "--quiet"])
    metrics = json.loads((work / "runs" / "text" / "metrics.json").read_text())
    fusion = json.loads((bundle / "text_genres" / "text_model.json").read_text())["fusion"]
    both = metrics["test_with_images"]
    out.update({k: v for k, v in both.items()})
    out.update({f"prior_{k}": round(metrics["test"][f"prior_{k}"], 4)
                for k in ("macro_map", "micro_map", "p_at_1")})
    out["fused_minus_best_single"] = round(both["fused_macro_map"] - max(both["image_macro_map"],
                                                                         both["text_macro_map"]), 4)
    out["fusion_on_validation"] = fusion
    out["machine"] = machine()
    out["date"] = time.strftime("%Y-%m-%d")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
