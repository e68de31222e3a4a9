"""Collecting a living catalog against the local stand-in, with latency: per-host politeness and
weekly updates, beside today's policy (an earlier commit's collectors) in the same run.

usage: python benchmarks/collect.py [--episodes 50 200] [--ongoing 100] [--today REV]

Scenarios, each a fresh `python -m collectors naver` process (Chromium start-up included) against
its own stand-in (tests/fake_sites.py): the site answers in 200-500 ms, its CDN (another host) in
50-150 ms, episode lists come 20 to a page, newest first, as Naver's API.
- `title-N`: one title of N episodes, default politeness.
- `update`: --ongoing titles of 3 episodes collected (delays off), then one new episode each and
  a rerun with default politeness; then an unchanged rerun (delays off: it counts requests).
Each runs with this tree's collectors and with REV's (`git worktree`), at once: the runs sleep
far more than they compute, and each stand-in sees only its own collector. Prints one JSON
document.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from machine import machine  # noqa: E402

from tests.fake_sites import FakeSites  # noqa: E402

SITE_LATENCY = (0.2, 0.5)
CDN_LATENCY = (0.05, 0.15)
PAGE_SIZE = 20  # naver.com's episode list
FAST = ["--min-delay", "0", "--max-delay", "0"]  # what today's collectors take as well


def title(tid: int, episodes: int) -> tuple:
    return (f"Title {tid}", f"Painter {tid % 40}", f"Writer {tid}", [("판타지", "GENRE_FANTASY")], episodes,
            "RATE_12", "MONDAY")


def stand_in(titles: dict) -> FakeSites:
    return FakeSites(naver=titles, naver_finished={}, naver_page_size=PAGE_SIZE, site_latency=SITE_LATENCY,
                     cdn_latency=CDN_LATENCY)


def run(code: Path, sites: FakeSites, catalog: Path, flags: list[str]) -> dict:
    """One collector process from the tree at `code`; what the stand-in saw of it."""
    since = len(sites.log)
    command = [sys.executable, "-m", "collectors", "naver", "--catalog", str(catalog),
               "--base-url", sites.base, "--min-episodes", "2", "--quiet", *flags]
    start = time.perf_counter()
    finished = subprocess.run(command, cwd=code, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    log = [r for r in sites.log[since:] if r["path"] != "/robots.txt"]
    site = [r["time"] for r in log if r["host"] == "site"]
    cdn = [r["time"] for r in log if r["host"] == "cdn"]
    titled = [r["time"] for r in log if "titleId=" in r["path"]]
    per_title: dict[str, int] = {}
    for request in log:
        if "titleId=" in request["path"]:
            tid = request["path"].split("titleId=")[1].split("&")[0]
            per_title[tid] = per_title.get(tid, 0) + 1
    gaps = [b - a for a, b in itertools.pairwise(site)]
    return {
        "seconds": round(seconds, 1),
        # From the first request about a title to the last image: Chromium's start and the
        # title list left out.
        "title_seconds": round(max(cdn + titled) - min(titled), 1) if titled else None,
        "site_requests": len(site), "cdn_requests": len(cdn),
        "site_per_minute": round(60 * len(site) / (site[-1] - site[0]), 1) if len(site) > 1 else None,
        "cdn_per_minute": round(60 * len(cdn) / (cdn[-1] - cdn[0]), 1) if len(cdn) > 1 else None,
        "smallest_site_gap_s": round(min(gaps), 2) if gaps else None,
        "max_requests_per_title": max(per_title.values()) if per_title else 0,
        "images_in_catalog": _count(catalog, "SELECT COUNT(*) FROM images"),
        "distinct_image_urls": _count(catalog, "SELECT COUNT(DISTINCT source_url) FROM images"),
        "exit": finished.returncode,
        "summary": finished.stdout.strip().splitlines()[:2],
    }


def _count(catalog: Path, sql: str) -> int:
    if not catalog.exists():
        return 0
    with sqlite3.connect(catalog) as db:
        return db.execute(sql).fetchone()[0]


def title_scenario(code: Path, episodes: int, folder: Path) -> dict:
    with stand_in({"1": title(1, episodes)}) as sites:
        return run(code, sites, folder / "catalog.sqlite", [])


def update_scenario(code: Path, ongoing: int, folder: Path) -> dict:
    titles = {str(1000 + i): title(1000 + i, 3) for i in range(ongoing)}
    with stand_in(titles) as sites:
        catalog = folder / "catalog.sqlite"
        # The first collection with delays off: only the update is measured. Same code as the
        # update (a catalog of a newer schema is refused by older collectors).
        first = run(code, sites, catalog, FAST + (["--cdn-min-gap", "0"] if code == REPO else []))
        for tid, entry in titles.items():
            titles[tid] = (*entry[:4], entry[4] + 1, *entry[5:])  # one new episode each
        update = run(code, sites, catalog, [])
        unchanged = run(code, sites, catalog, FAST)
    update["new_images"] = update["images_in_catalog"] - first["images_in_catalog"]
    return {"first_collection": first, "weekly_update": update, "unchanged_rerun": unchanged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--ongoing", type=int, default=100)
    parser.add_argument("--today", default="4ee0c22", help="the commit whose collectors are today's policy")
    parser.add_argument("--skip-today", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="collect-bench-"))
    today = work / "today"
    codes = {"default": REPO}
    if not args.skip_today:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(today), args.today],
                       check=True)
        codes["today"] = today
    try:
        jobs = {}
        with ThreadPoolExecutor(8) as pool:
            for policy, code in codes.items():
                for n in args.episodes:
                    folder = work / f"{policy}-title-{n}"
                    jobs[f"title_{n}/{policy}"] = pool.submit(title_scenario, code, n, folder)
                jobs[f"update/{policy}"] = pool.submit(update_scenario, code, args.ongoing,
                                                       work / f"{policy}-update")
            results = {name: job.result() for name, job in jobs.items()}
    finally:
        if today.exists():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(today)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps({"benchmark": "collect", "date": time.strftime("%Y-%m-%d %H:%M"),
                      "machine": machine(),
                      "today": args.today, "site_latency_s": SITE_LATENCY, "cdn_latency_s": CDN_LATENCY,
                      "results": results}, indent=2))


if __name__ == "__main__":
    main()
