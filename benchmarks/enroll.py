"""Enrolling without retraining, on a style dataset's name split: held-out titles against trained ones.

usage: python benchmarks/enroll.py DATA_DIR [--work DIR] [--held-out 5] [--single-title-authors 2] [--seed 0]
                                  [--set SECTION.KEY=VALUE ...]

DATA_DIR is the output of `../shared/data/icon_themes.py` (or `font_styles.py`). In one run:
1. the reference name split (`../shared/data/split_by_name.py`): test names unseen in training;
2. --held-out whole titles leave training, --single-title-authors of them by authors who have
   no other title (so those authors are new to the model);
3. the default model is trained on the rest (`python -m training.train --manifest`, no preset);
4. trained titles' test images are scored through `find_similar` (LiteRT, as users query);
5. the held-out titles are enrolled from their training-name images (timed), and both the
   enrolled titles' and the trained titles' test images are scored again.
Prints one JSON document: title hit@1 / hit@10 and author top-1 for enrolled against trained
titles, for each title ranking (`inference.query.RANKINGS`: nearest exemplars, the default, and
title means), beside the priors, how much the trained titles' figures moved (in the same ranking,
and against the title means before enrolling), how many trained-title images enrolled titles took
and how many of those went to a look-alike the enroll named for their own title (a fork), the trained
titles' change apart from the titles in those pairs, and the query time per image before and after
enrolling.
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
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from inference.enrollment import EnrollImage, enroll  # noqa: E402
from inference.query import RANKINGS, StyleFinder  # noqa: E402

SPLIT_SCRIPT = REPO.parent / "shared" / "data" / "split_by_name.py"


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def choose_held_out(rows: list[dict], count: int, single: int, seed: int) -> list[str]:
    """`single` titles whose authors have no other title, the rest by authors with several."""
    titles_of = {}
    for row in rows:
        titles_of.setdefault(row["author"], set()).add(row["title"])
    rng = random.Random(seed)
    lone = sorted(next(iter(t)) for t in titles_of.values() if len(t) == 1)
    shared = sorted(t for ts in titles_of.values() if len(ts) >= 2 for t in ts)  # the author keeps one
    if len(lone) < single:
        raise SystemExit(f"error: only {len(lone)} authors have a single title; lower --single-title-authors")
    chosen = rng.sample(lone, single)
    by_author = {}
    for title in rng.sample(shared, len(shared)):
        author = next(a for a, ts in titles_of.items() if title in ts)
        if author not in by_author and len(chosen) < count:
            by_author[author] = title
            chosen.append(title)
    return chosen


def answers(finder: StyleFinder, rows: list[dict], data_dir: Path, batch: int = 64) -> list[tuple]:
    """Each row's top-10 titles and top author (or None), through the query path."""
    out = []
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        for result in finder.query([data_dir / r["image"] for r in chunk], k=10):
            out.append(([t.title for t in result.titles], result.authors[0].name if result.authors else None))
    return out


def figures(rows: list[dict], answered: list[tuple]) -> dict:
    """Title hit@1 / hit@10 and author top-1 of `answered` (`answers`) over `rows`."""
    hits1 = sum(titles[0] == r["title"] for r, (titles, _) in zip(rows, answered, strict=True))
    hits10 = sum(r["title"] in titles for r, (titles, _) in zip(rows, answered, strict=True))
    authors = sum(author == r["author"] for r, (_, author) in zip(rows, answered, strict=True))
    n = max(len(rows), 1)
    return {"images": len(rows), "title_hit1": round(hits1 / n, 4), "title_hit10": round(hits10 / n, 4),
            "author_top1": round(authors / n, 4)}


def score(finder: StyleFinder, rows: list[dict], data_dir: Path) -> dict:
    """Title hit@1 / hit@10 and author top-1 over `rows`, through the query path."""
    return figures(rows, answers(finder, rows, data_dir))


def changes(after: dict, before: dict) -> dict:
    return {k: round(after[k] - before[k], 4) for k in ("title_hit1", "title_hit10", "author_top1")}


def taken_by_enrolled(rows: list[dict], before: list[tuple], after: list[tuple], held: list[str],
                      pairs: set[frozenset]) -> dict:
    """Trained-title images named right before enrolling and an enrolled title after: how many,
    and how many of them went to a look-alike the enroll named for their own title."""
    taken = [(r["title"], a[0][0]) for r, b, a in zip(rows, before, after, strict=True)
             if b[0][0] == r["title"] and a[0][0] in held]
    return {"images": len(taken), "to_a_named_look_alike": sum(frozenset(t) in pairs for t in taken)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--work", type=Path, default=Path("data/bench-enroll"))
    parser.add_argument("--held-out", type=int, default=5)
    parser.add_argument("--single-title-authors", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="passed to the training run, e.g. "
                        "train.refit_share=0 (to compare a recipe on this benchmark)")
    args = parser.parse_args()
    subprocess.run([sys.executable, str(SPLIT_SCRIPT), str(args.data_dir)], check=True, capture_output=True)
    train, test = read_rows(args.data_dir / "train.csv"), read_rows(args.data_dir / "test.csv")
    held = choose_held_out(train, args.held_out, args.single_title_authors, args.seed)
    args.work.mkdir(parents=True, exist_ok=True)
    manifest = args.work / "train_without_held_out.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(train[0]))
        writer.writeheader()
        writer.writerows(r for r in train if r["title"] not in held)
    start = time.perf_counter()
    env = {**os.environ, "STYLEFINDER_CACHE": str(args.work / "weights")}
    command = [sys.executable, "-m", "training.train", "--manifest", str(manifest), "--image-root",
               str(args.data_dir), "--out-dir", str(args.work / "runs"), "--name", "base", "--quiet",
               "--set", f"data.cache_dir={args.work / 'cache'}",
               *(arg for item in args.set for arg in ("--set", item))]
    trained = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if trained.returncode:  # its own one-line reason (a bad --set, say), not a traceback of ours
        lines = trained.stderr.strip().splitlines() or [f"exit status {trained.returncode}"]
        raise SystemExit(f"error: training failed: {lines[-1]}")
    train_seconds = time.perf_counter() - start
    bundle = args.work / "runs" / "base" / "bundle"
    finders = {ranking: StyleFinder(bundle, ranking=ranking) for ranking in RANKINGS}
    finder = finders[RANKINGS[0]]  # the default
    trained_test = [r for r in test if r["title"] not in held]
    enrolled_test = [r for r in test if r["title"] in held]
    new_authors = {r["author"] for r in enrolled_test} - set(finder.bundle.authors)
    start = time.perf_counter()
    answered = {ranking: answers(f, trained_test, args.data_dir) for ranking, f in finders.items()}
    query_before = (time.perf_counter() - start) / len(finders)
    before = {ranking: figures(trained_test, a) for ranking, a in answered.items()}
    images = [EnrollImage(args.data_dir / r["image"], r["title"], r["author"], tuple(
        g for g in r.get("genres", "").split("|") if g)) for r in train if r["title"] in held]
    start = time.perf_counter()
    report = enroll(bundle, images, str(args.data_dir / "train.csv"), progress=False, finder=finder)
    enroll_seconds = time.perf_counter() - start
    pairs = {frozenset((p.title, p.other)) for p in report.look_alikes}
    # Trained titles with no look-alike among the enrolled ones: what the enroll costs them apart
    # from forks of their own title (which the enroll names to the user).
    alike = {t for pair in pairs for t in pair if pair & set(held)}
    apart = [i for i, r in enumerate(trained_test) if r["title"] not in alike]
    rows_apart = [trained_test[i] for i in apart]
    rankings = {}
    of_new = [r for r in enrolled_test if r["author"] in new_authors]
    for ranking, f in finders.items():
        f.refresh()
        start = time.perf_counter()
        answered_after = answers(f, trained_test, args.data_dir)
        if f is finder:
            query_after = time.perf_counter() - start
        after = figures(trained_test, answered_after)
        rankings[ranking] = {
            "trained_titles_before": before[ranking], "trained_titles_after": after,
            "trained_change": changes(after, before[ranking]),
            # Against today's users' figures: the title means before anything is enrolled (the
            # issue's "trained titles unchanged" row, as benchmarks/enroll_rankings.py reports it).
            "trained_change_vs_means_before": changes(after, before["means"]),
            "trained_taken_by_enrolled": taken_by_enrolled(trained_test, answered[ranking], answered_after,
                                                           held, pairs),
            "trained_change_apart_from_look_alikes": {
                "images": len(apart),
                **changes(figures(rows_apart, [answered_after[i] for i in apart]),
                          figures(rows_apart, [answered[ranking][i] for i in apart]))},
            "enrolled_titles": score(f, enrolled_test, args.data_dir),
            "enrolled_titles_of_new_authors": score(f, of_new, args.data_dir),
            "enrolled_titles_of_known_authors": score(f, [r for r in enrolled_test if r not in of_new],
                                                      args.data_dir)}
    counts = Counter(r["author"] for r in train if r["title"] not in held)
    top_author = counts.most_common(1)[0][0]
    print(json.dumps({
        "benchmark": "enroll",
        "dataset": args.data_dir.name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine(),
        "held_out_titles": held, "new_authors": sorted(new_authors), "settings": args.set,
        "train_seconds": round(train_seconds, 1),
        "enroll": {"images": report.images, "seconds": round(enroll_seconds, 2),
                   "seconds_per_1000_images": round(1000 * enroll_seconds / max(report.images, 1), 2),
                   "rejected": len(report.rejected),
                   "look_alikes": [[p.title, p.other, round(p.share, 3), round(p.share_back, 3)]
                                   for p in report.look_alikes]},
        # The same images through the query path in batches of 64 (decode, model, search, authors):
        # what naming enrolled authors adds to a query.
        "query_ms_per_image": {"before_enrolling": round(1000 * query_before / len(trained_test), 2),
                               "after_enrolling": round(1000 * query_after / len(trained_test), 2)},
        # Per title ranking (inference.query.RANKINGS; the first is the default): authors are named
        # alike in both, titles are ranked by their nearest exemplars or by their means.
        "rankings": rankings,
        "prior": {"title_hit1": round(1 / len(finder.bundle.titles), 4),
                  "author_top1_trained": round(sum(r["author"] == top_author for r in trained_test)
                                               / len(trained_test), 4),
                  "author_top1_enrolled": round(sum(r["author"] == top_author for r in enrolled_test)
                                                / max(len(enrolled_test), 1), 4)},
        "prototype_temperature": finder.bundle.prototype_temperature,
        "enrolled_bias": finder.bundle.enrolled_bias,
    }, indent=2))


if __name__ == "__main__":
    main()
