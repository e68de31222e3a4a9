"""python -m collectors SITE: collect titles and images from a site into the catalog.

    python -m collectors naver --catalog data/catalog.sqlite --images data/images --max-titles 20
    python -m collectors kakao --weekday mon --min-episodes 100
    python -m collectors mal --max-titles 500 --keep-types ONA

A rerun updates the catalog: it reads titles that may have changed (ongoing, or not checked for
--refresh-days), fetches only the episodes and images the catalog lacks, and records metadata
changes (status, genres, synopsis, adult flag) in the catalog's title_changes table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from collectors.browser import DEFAULT_USER_AGENT, BrowserConfig, BrowserError
from collectors.settings import CdnPoliteness, CollectOptions, Politeness, Timeouts
from collectors.sites import WEEKDAYS

EXIT_FAILURES = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m collectors", description=__doc__.split("\n")[0])
    parser.add_argument("site", choices=("naver", "kakao", "mal"))
    parser.add_argument("--catalog", type=Path, default=Path("data/catalog.sqlite"))
    parser.add_argument("--images", type=Path, help="image folder (default: images/ beside the catalog)")
    parser.add_argument("--max-titles", type=int)
    parser.add_argument("--min-episodes", type=int, help="skip shorter titles (default 200 for webtoons)")
    parser.add_argument("--weekday", choices=WEEKDAYS, help="one weekday's titles only")
    parser.add_argument("--finished", action="store_true", help="also finished (completed) webtoons")
    parser.add_argument("--keep-types", default="", help="MAL types to keep, e.g. ONA,Unknown")
    parser.add_argument("--base-url", help="another host for the site and its API (a mirror, a test site)")
    parser.add_argument("--remote", help="Selenium Grid URL instead of a local Chromium")
    parser.add_argument("--chromedriver", help="path to chromedriver (default: the system one)")
    parser.add_argument("--user-agent", default=DEFAULT_USER_AGENT)
    parser.add_argument("--refresh-days", type=float, default=CollectOptions.refresh_days,
                        help="read a finished, complete title again when its last check is this old "
                             "(default 6; ongoing titles are read on every run)")
    parser.add_argument("--min-delay", type=float, default=Politeness.min_delay,
                        help="seconds between two requests to the site's pages and API (default 4)")
    parser.add_argument("--max-delay", type=float, default=Politeness.max_delay, help="seconds (default 7)")
    cdn = CdnPoliteness()
    parser.add_argument("--cdn-concurrency", type=int, default=cdn.concurrency,
                        help=f"image downloads in flight per CDN host (default {cdn.concurrency})")
    parser.add_argument("--cdn-min-gap", type=float, default=cdn.min_gap,
                        help="fewest seconds between two request starts to a CDN host "
                             f"(default {cdn.min_gap})")
    parser.add_argument("--cdn-target-concurrency", type=float, default=cdn.target_concurrency,
                        help="the gap to a CDN host follows latency / this (AutoThrottle's target, "
                             f"default {cdn.target_concurrency})")
    parser.add_argument("--cdn-max-gap", type=float, default=cdn.max_gap,
                        help=f"longest gap backing off may reach, seconds (default {cdn.max_gap:g})")
    parser.add_argument("--retries", type=int, default=Politeness.retries)
    parser.add_argument("--backoff", type=float, default=Politeness.backoff_base,
                        help="first back-off pause in seconds, doubled per retry")
    parser.add_argument("--timeout", type=float,
                        help="seconds for a page, an in-page fetch, an element and a download "
                             "(default 30, 30, 10 and 30)")
    parser.add_argument("--ignore-robots", action="store_true", help="do not honour robots.txt")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # its own retries; the final error is ours
    from collectors.collect import collect
    from collectors.store import CatalogStore
    from datasets.catalog import Catalog, CatalogError
    from datasets.stop_signals import stop_on_signals

    if args.timeout is not None and args.timeout <= 0:
        print(f"error: --timeout must be positive, got {args.timeout}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0 <= args.min_delay <= args.max_delay:
        print(f"error: --min-delay {args.min_delay} and --max-delay {args.max_delay}: need "
              "0 <= min <= max", file=sys.stderr)
        return EXIT_BAD_INPUT
    problem = _cdn_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    options = CollectOptions(args.max_titles, args.min_episodes, args.weekday, args.finished, args.base_url,
                             tuple(t for t in args.keep_types.split(",") if t), args.refresh_days)
    cdn = CdnPoliteness(args.cdn_concurrency, args.cdn_min_gap, args.cdn_target_concurrency, args.cdn_max_gap)
    politeness = Politeness(args.min_delay, args.max_delay, not args.ignore_robots, args.retries,
                            args.backoff, cdn=cdn)
    timeouts = Timeouts(*[args.timeout] * 4) if args.timeout else Timeouts()
    browser = BrowserConfig(remote=args.remote, user_agent=args.user_agent, chromedriver=args.chromedriver,
                            timeouts=timeouts)
    try:
        with stop_on_signals() as stop, Catalog(args.catalog, create=True) as catalog:
            store = CatalogStore(catalog, args.images or args.catalog.resolve().parent / "images")
            summary = collect(args.site, store, options, politeness, browser, progress=not args.quiet,
                              stop=stop)
    except (CatalogError, BrowserError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(summary.lines()))
    if summary.stopped:
        print(f"stopped by {summary.stopped} after {summary.titles} titles and {summary.images} images; "
              "the same command resumes (stored images are kept, never fetched again)", file=sys.stderr)
        return stop.exit_code
    if summary.collected_nothing():
        print(f"error: collected nothing: {summary.why_nothing()}", file=sys.stderr)
        return EXIT_FAILURES
    return EXIT_FAILURES if summary.failed else 0


def _cdn_problem(args: argparse.Namespace) -> str | None:
    if args.cdn_concurrency < 1:
        return f"--cdn-concurrency must be at least 1, got {args.cdn_concurrency}"
    if args.cdn_target_concurrency <= 0:
        return f"--cdn-target-concurrency must be positive, got {args.cdn_target_concurrency}"
    if not 0 <= args.cdn_min_gap <= args.cdn_max_gap:
        return (f"--cdn-min-gap {args.cdn_min_gap} and --cdn-max-gap {args.cdn_max_gap}: "
                "need 0 <= min <= max")
    if args.refresh_days < 0:
        return f"--refresh-days must be 0 or more, got {args.refresh_days}"
    return None


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
