"""`python -m training.encode` into a store that holds its encoder, against an earlier commit; prints JSON.

usage: python benchmarks/encode_startup.py DATA_DIR [--images 1024] [--new 20] [--rounds 3]
                                           [--baseline-rev 66c9fa8] [--work DIR]

What a cron run or a short `--shard` job pays before and around its work: the command run as a user
runs it, from this tree and from a worktree of --baseline-rev (default: the last commit whose encode
imported TensorFlow whatever the store held), alternating, in two cases: every one of --images
images already stored (nothing to encode), and --new images into a store that holds only the
encoder. Wall time and the child's peak RSS (its VmHWM), per round and as medians.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402
from scale_encoding import SIZE, converted_encoder, fresh_store, manifest_paths  # noqa: E402
from scale_store import encode_command  # noqa: E402
from scale_synthetic import status_kb  # noqa: E402

BASELINE_REV = "66c9fa8"  # the last commit whose training.encode imported TensorFlow on every run


def timed_child(command: list[str], tree: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of `command` run in `tree` with that tree's code first on the path.
    The peak is the child's own VmHWM, read every 5 ms until it exits (`ru_maxrss` would report this
    process's, which Linux carries across fork and exec)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    peak = 0.0
    with tempfile.TemporaryFile() as errors:  # a file, not a pipe: a full pipe would stall the child
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        while child.poll() is None:
            with contextlib.suppress(OSError, StopIteration):  # exiting between poll and read
                peak = max(peak, status_kb("VmHWM", child.pid) / 1024)
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        if child.returncode:
            errors.seek(0)
            last = (errors.read().decode(errors="replace").strip().splitlines() or [""])[-1]
            sys.exit(f"error: {' '.join(command[:3])} in {tree} failed: {last}")
    return seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--new", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--work", type=Path, default=Path("data/bench-encode-startup"))
    args = parser.parse_args()
    if not (args.data_dir / "manifest.csv").is_file():
        sys.exit(f"error: {args.data_dir / 'manifest.csv'}: not found; build it with icon_themes.py")
    paths = manifest_paths(args.data_dir)
    stored, new = paths[: args.images], paths[args.images : args.images + args.new]
    args.work.mkdir(parents=True, exist_ok=True)
    from datasets.tf_runtime import import_tensorflow

    import_tensorflow(quiet=True)  # this process converts the encoder once; the timed children are apart
    spec, _ = converted_encoder(args.work / "encoder", paths)
    full = fresh_store(spec, args.work / "store-full")
    nothing_new = encode_command(stored, args.work / "stored.csv", full.root)
    subprocess.run(nothing_new, cwd=REPO, check=True, capture_output=True)  # fills it once, not timed
    with tempfile.TemporaryDirectory(prefix="encode-startup-") as scratch:
        baseline = Path(scratch) / "baseline"
        added = subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline_rev],
                               cwd=REPO, capture_output=True, text=True)
        if added.returncode:
            sys.exit(f"error: cannot check out {args.baseline_rev}: {added.stderr.strip().splitlines()[-1]}")
        try:
            rounds = []
            for r in range(args.rounds):
                row = {}
                for name, tree in (("this", REPO), ("baseline", baseline))[:: 1 if r % 2 == 0 else -1]:
                    empty = fresh_store(spec, args.work / "store-new")
                    into_empty = encode_command(new, args.work / "new.csv", empty.root)
                    row[name] = {"nothing_new": timed_child(nothing_new, tree),
                                 "new_images": timed_child(into_empty, tree)}
                rounds.append(row)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=REPO,
                           capture_output=True)
    results = {}
    for name in ("this", "baseline"):
        for case in ("nothing_new", "new_images"):
            runs = [row[name][case] for row in rounds]
            results[f"{name}_{case}"] = {"median_s": round(statistics.median(s for s, _ in runs), 2),
                                         "median_peak_rss_mb": round(statistics.median(m for _, m in runs)),
                                         "rounds": [[round(s, 2), round(m)] for s, m in runs]}
    print(json.dumps({"benchmark": "encode_startup", "date": time.strftime("%Y-%m-%d %H:%M"),
                      "machine": machine(size=list(SIZE)),
                      "data": str(args.data_dir), "stored_images": len(stored), "new_images": len(new),
                      "baseline_rev": args.baseline_rev, "results": results}, indent=2))


if __name__ == "__main__":
    main()
