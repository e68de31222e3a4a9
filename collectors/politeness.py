"""Politeness: a randomised delay per request to a site, robots.txt, and exponential back-off."""

from __future__ import annotations

import logging
import random
import time
import urllib.robotparser
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from collectors.settings import Politeness

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({403, 429, 500, 502, 503, 504})


class FetchError(RuntimeError):
    """A request that failed for good; str() names the site, the URL and why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetryableError(FetchError):
    """403, 429, 5xx or a timeout: worth another try after a pause."""


class PoliteClock:
    """Waits so that requests to one host are at least a random 4-7 s apart (by default)."""

    def __init__(self, policy: Politeness, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.policy, self.sleep, self.clock = policy, sleep, clock
        self.rng = rng or random.Random()
        self.last: dict[str, float] = {}

    def wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        gap = self.rng.uniform(self.policy.min_delay, self.policy.max_delay)
        if host in self.last:
            remaining = self.last[host] + gap - self.clock()
            if remaining > 0:
                self.sleep(remaining)
        self.last[host] = self.clock()


class Robots:
    """robots.txt of each host, read once through `read(url) -> text`; missing means allowed."""

    def __init__(self, user_agent: str, read: Callable[[str], str | None], obey: bool = True):
        self.user_agent, self.read, self.obey = user_agent, read, obey
        self.parsers: dict[str, urllib.robotparser.RobotFileParser] = {}

    def allowed(self, url: str) -> bool:
        if not self.obey:
            return True
        parts = urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}"
        if root not in self.parsers:
            parser = urllib.robotparser.RobotFileParser(urljoin(root, "/robots.txt"))
            text = self.read(urljoin(root, "/robots.txt"))
            parser.parse((text or "").splitlines())
            self.parsers[root] = parser
        return self.parsers[root].can_fetch(self.user_agent, url)


def with_backoff(call: Callable[[], T], policy: Politeness, what: str,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """call(), retried on RetryableError with doubling pauses up to the cap; then a clear FetchError."""
    delay = policy.backoff_base
    for attempt in range(policy.retries + 1):
        try:
            return call()
        except RetryableError as err:
            if attempt == policy.retries:
                raise FetchError(f"{what}: gave up after {policy.retries + 1} attempts ({err})",
                                 err.status) from None
            log.warning("%s: %s; retrying in %.2f s", what, err, delay)
            sleep(delay)
            delay = min(delay * 2, policy.backoff_cap)
    raise AssertionError("unreachable")
