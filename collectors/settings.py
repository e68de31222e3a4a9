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
class Politeness:
    """Defaults follow the MAL study, which needed 4-7 s between requests to avoid bans."""

    min_delay: float = 4.0
    max_delay: float = 7.0
    obey_robots: bool = True
    retries: int = 5  # after the first attempt, on 403, 429, 5xx and timeouts
    backoff_base: float = 2.0  # seconds before the first retry; doubled each time
    backoff_cap: float = 120.0
    # One request at a time per collector; to go wider, run collectors on a Selenium Grid (--remote).


@dataclass(frozen=True)
class CollectOptions:
    max_titles: int | None = None
    min_episodes: int | None = None  # None: the site's default (200 for webtoons, 0 for MAL)
    weekday: str | None = None  # mon..sun; None: every day
    finished: bool = False  # also completed webtoons
    base_url: str | None = None  # another host for the site (and its API), e.g. a test site
    keep_types: tuple[str, ...] = ()  # MAL types to keep although dropped by default
