"""Named timeouts and politeness settings for collectors, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Seconds; `--timeout` sets all four at once."""

    page_load: float = 30.0  # a whole page, scripts included
    script: float = 30.0  # an in-page fetch() run through execute_async_script
    element: float = 10.0  # waiting for a selector to appear
    download: float = 30.0  # one image from a CDN


@dataclass(frozen=True)
class CdnPoliteness:
    """Image hosts (any host that is not the site's pages or API) are static-file CDNs built for
    millions of readers; the polite practice there is adaptive, as Scrapy's AutoThrottle: the gap
    between two requests follows the measured latency towards a target concurrency, never below a
    floor, and backs off when the host says so."""

    # A few downloads in flight per CDN host: enough to hide 50-150 ms of latency, far below the
    # 6-8 connections per host a browser opens for one page.
    concurrency: int = 4
    # Never more than 4 request starts a second on one CDN host, whatever its latency: a reader
    # scrolling an episode list loads thumbnails faster than this.
    min_gap: float = 0.25
    # AutoThrottle's target: the gap is latency / target concurrency (1 s latency -> 0.5 s gaps).
    target_concurrency: float = 2.0
    # Backing off never waits longer than this between two starts (AutoThrottle's max delay).
    max_gap: float = 60.0


@dataclass(frozen=True)
class Politeness:
    """The site's pages and API: defaults follow the MAL study, which needed 4-7 s between
    requests (one at a time) to avoid bans. Image CDN hosts follow `cdn`."""

    min_delay: float = 4.0
    max_delay: float = 7.0
    obey_robots: bool = True  # robots.txt rules, and its Crawl-delay when larger than our gap
    retries: int = 5  # after the first attempt, on 403, 429, 5xx and timeouts
    backoff_base: float = 2.0  # seconds before the first retry; doubled each time
    backoff_cap: float = 120.0  # a Retry-After longer than this gives up on the request instead
    cdn: CdnPoliteness = CdnPoliteness()
    # One page or API request at a time per collector; to go wider, run collectors on a Selenium Grid.


@dataclass(frozen=True)
class CollectOptions:
    max_titles: int | None = None
    min_episodes: int | None = None  # None: the site's default (200 for webtoons, 0 for MAL)
    weekday: str | None = None  # mon..sun; None: every day
    finished: bool = False  # also completed webtoons
    base_url: str | None = None  # another host for the site (and its API), e.g. a test site
    keep_types: tuple[str, ...] = ()  # MAL types to keep although dropped by default
    # A title finished and complete in the catalog is read again when its last check is this many
    # days old; ongoing titles are read on every run. 6: a weekly run (cron's 7 days, give or take
    # an hour of drift) re-checks everything once a week.
    refresh_days: float = 6.0
