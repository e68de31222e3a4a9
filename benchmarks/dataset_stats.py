"""Time the data layer's commands on the icon-theme dataset and print one JSON document.

usage: python benchmarks/dataset_stats.py DATA_DIR [--repeats 3]

DATA_DIR is the output of `../shared/data/icon_themes.py DATA_DIR`. Each command runs as a user
runs it (`python -m datasets ...` in a fresh process), into a fresh catalog; times are medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

REPO = Path(__file__).resolve().parents[1]


def timed(*args: str) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "datasets", *args], cwd=REPO, capture_output=True,
                            text=True, check=True)
    return time.perf_counter() - start, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    manifest = args.data_dir / "manifest.csv"
    if not manifest.is_file():
        sys.exit(f"error: {manifest}: not found; build it with ../shared/data/icon_themes.py")
    times: dict[str, list[float]] = {"import": [], "reimport": [], "split": [], "stats": []}
    outputs: dict[str, str] = {}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            catalog = str(Path(tmp) / "icons.sqlite")
            steps = {
                "import": ("import", str(manifest), "--catalog", catalog, "--quiet"),
                "reimport": ("import", str(manifest), "--catalog", catalog, "--quiet"),
                "split": ("split", "--catalog", catalog, "--by", "title", "--min-images", "40"),
                "stats": ("stats", "--catalog", catalog, "--chart", str(Path(tmp) / "stats.png")),
            }
            for name, step in steps.items():
                seconds, out = timed(*step)
                times[name].append(seconds)
                outputs[name] = out
    print(json.dumps({
        "benchmark": "dataset_stats",
        "data": str(args.data_dir),
        "machine": machine(),
        "repeats": args.repeats,
        "median_seconds": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "output": outputs,
    }, indent=2))


if __name__ == "__main__":
    main()
