"""Collector throughput against the local stand-in sites: pages and images per minute, delays off and on.

usage: python benchmarks/collect.py [--site naver] [--polite-titles 1]

Runs `python -m collectors SITE --base-url <local site>` twice on fresh catalogs:
- with the delays off (--min-delay 0 --max-delay 0), over every title of the stand-in;
- with the default delays (4-7 s per request to a host), over --polite-titles titles.
"Pages" are JSON and HTML requests (robots.txt not counted); "images" are image downloads. Chromium
start-up is included. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fake_sites import FakeSites  # noqa: E402

IMAGE_PREFIXES = ("/cdn/", "/private/")


def run(site: str, extra: list[str]) -> dict:
    with FakeSites() as sites, tempfile.TemporaryDirectory() as folder:
        sites.hang_left.clear()  # a deliberate 4 s hang is a test fault, not throughput
        command = [sys.executable, "-m", "collectors", site, "--catalog", f"{folder}/catalog.sqlite",
                   "--base-url", sites.base, "--min-episodes", "2", "--quiet", "--backoff", "0.01", *extra]
        start = time.perf_counter()
        finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        pages = [r for r in sites.log
                 if not r["path"].startswith(IMAGE_PREFIXES) and r["path"] != "/robots.txt"]
        images = [r for r in sites.log if r["path"].startswith(IMAGE_PREFIXES)]
        return {"command_flags": extra, "seconds": round(seconds, 1), "pages": len(pages),
                "images": len(images),
                "pages_per_minute": round(60 * len(pages) / seconds, 1),
                "images_per_minute": round(60 * len(images) / seconds, 1),
                "summary": finished.stdout.strip().splitlines()[:1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", default="naver", choices=("naver", "kakao", "mal"))
    parser.add_argument("--polite-titles", type=int, default=1)
    args = parser.parse_args()
    fast = run(args.site, ["--min-delay", "0", "--max-delay", "0"])
    polite = run(args.site, ["--max-titles", str(args.polite_titles)])
    print(json.dumps({"benchmark": "collect", "site": args.site, "date": time.strftime("%Y-%m-%d"),
                      "machine": {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version()},
                      "delays_off": fast, "default_delays": polite}, indent=2))


if __name__ == "__main__":
    main()
