"""Politeness per host: the site's pages one at a time 4-7 s apart, image CDNs adaptively, robots.txt
(rules and Crawl-delay), Retry-After, and exponential back-off.

Each host has a gate. A request takes its turn at the gate (`start`), which waits as the host's
policy asks, and reports back (`finish`) with its latency and status, from which the gate adapts.
The site's gate is a random 4-7 s gap and one request at a time; a CDN's gate is Scrapy's
AutoThrottle rule: the gap moves halfway towards latency / target concurrency after each good
answer, doubles on 429 and 503 (the rate halved), and a Retry-After pauses the whole host. Gates
are thread-safe: image downloads run in a few threads while the collecting thread reads pages.
"""

from __future__ import annotations

import email.utils
import logging
import random
import re
import threading
import time
import urllib.robotparser
from collections.abc import Callable
from datetime import timezone
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from collectors.settings import CdnPoliteness, Politeness

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({403, 429, 500, 502, 503, 504})
SLOW_DOWN = frozenset({429, 503})  # the host asks for fewer requests: halve the rate


class FetchError(RuntimeError):
    """A request that failed for good; str() names the site, the URL and why."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class RetryableError(FetchError):
    """403, 429, 5xx or a timeout: worth another try after a pause."""


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """The Retry-After header's wait in seconds (it is either seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now())


class Gate:
    """One host's turns. `start()` blocks until the request may go and returns its start time;
    `finish()` frees the slot and adapts the gap."""

    def __init__(self, slots: int, clock: Callable[[], float], pause_cap: float):
        self.clock, self.pause_cap = clock, pause_cap
        self.slots = threading.BoundedSemaphore(slots)
        self.lock = threading.Lock()
        self.next_start: float | None = None
        self.paused_until = 0.0
        self.started = 0  # requests let through, for summaries and tests

    def next_gap(self) -> float:
        raise NotImplementedError

    def start(self, sleep: Callable[[float], None]) -> float:
        self.slots.acquire()
        try:
            with self.lock:
                now = self.clock()
                start = max(now, self.paused_until, self.next_start if self.next_start is not None else now)
                self.next_start = start + self.next_gap()
                self.started += 1
            if start > now:
                sleep(start - now)
        except BaseException:
            self.slots.release()
            raise
        return start

    def finish(self, latency: float, status: int | None, retry_after: float | None = None) -> None:
        with self.lock:
            if retry_after is not None and status in RETRY_STATUSES:
                wait = min(retry_after, self.pause_cap)
                if wait < retry_after:
                    log.warning("a host asked to wait %.0f s (Retry-After); waiting the cap, %.0f s",
                                retry_after, wait)
                self.paused_until = max(self.paused_until, self.clock() + wait)
            self.adapt(latency, status)
        self.slots.release()

    def adapt(self, latency: float, status: int | None) -> None:
        pass


class SiteGate(Gate):
    """The site's pages and API: one at a time, a random gap between starts (Crawl-delay if larger)."""

    def __init__(self, policy: Politeness, crawl_delay: float, clock: Callable[[], float],
                 rng: random.Random):
        super().__init__(1, clock, policy.backoff_cap)
        self.policy, self.crawl_delay, self.rng = policy, crawl_delay, rng

    def next_gap(self) -> float:
        return max(self.rng.uniform(self.policy.min_delay, self.policy.max_delay), self.crawl_delay)


class CdnGate(Gate):
    """An image CDN: a few requests in flight; the gap follows latency (AutoThrottle)."""

    def __init__(self, policy: CdnPoliteness, crawl_delay: float, clock: Callable[[], float],
                 pause_cap: float):
        super().__init__(policy.concurrency, clock, pause_cap)
        self.policy = policy
        self.floor = max(policy.min_gap, crawl_delay)
        self.gap = self.floor

    def next_gap(self) -> float:
        return self.gap

    def adapt(self, latency: float, status: int | None) -> None:
        if status in SLOW_DOWN:
            self.gap = min(self.policy.max_gap, max(self.gap, self.floor) * 2)
        elif status is not None and status < 400:
            # AutoThrottle: only good answers bring the gap down, halfway towards the target.
            target = latency / self.policy.target_concurrency
            self.gap = min(self.policy.max_gap, max(self.floor, (self.gap + target) / 2))


class HostGates:
    """A gate per host: site hosts (whatever serves the site's pages and API) get the site's
    policy, every other host (the image CDNs) the adaptive one."""

    def __init__(self, policy: Politeness, crawl_delay: Callable[[str], float | None] = lambda url: None,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None):
        self.policy, self.crawl_delay, self.clock = policy, crawl_delay, clock
        self.rng = rng or random.Random()
        self.site_hosts: set[str] = set()
        self.gates: dict[str, Gate] = {}
        self.lock = threading.Lock()

    def mark_site(self, url: str) -> None:
        """The site's pages and API are served from this URL's host."""
        with self.lock:
            self.site_hosts.add(urlsplit(url).netloc)

    def gate(self, url: str) -> Gate:
        host = urlsplit(url).netloc
        with self.lock:
            if host in self.gates:
                return self.gates[host]
        delay = self.crawl_delay(url) or 0.0  # robots.txt read outside the lock: a request of its own
        with self.lock:
            if host not in self.gates:
                if host in self.site_hosts:
                    gate: Gate = SiteGate(self.policy, delay, self.clock, self.rng)
                else:
                    gate = CdnGate(self.policy.cdn, delay, self.clock, self.policy.backoff_cap)
                # A host's robots.txt is read just before its gate opens: that was its first request.
                gate.next_start = self.clock() + gate.next_gap()
                self.gates[host] = gate
            return self.gates[host]


class Robots:
    """robots.txt of each host, read once through `read(url) -> text`; missing means allowed."""

    def __init__(self, user_agent: str, read: Callable[[str], str | None], obey: bool = True):
        self.user_agent, self.read, self.obey = user_agent, read, obey
        self.parsers: dict[str, urllib.robotparser.RobotFileParser] = {}
        self.fractions: dict[int, float] = {}  # stand-in whole numbers -> fractional Crawl-delays
        self.lock = threading.Lock()

    def _parser(self, url: str) -> urllib.robotparser.RobotFileParser:
        parts = urlsplit(url)
        root = f"{parts.scheme}://{parts.netloc}"
        with self.lock:  # one read per host, also when download threads ask at once
            if root not in self.parsers:
                parser = urllib.robotparser.RobotFileParser(urljoin(root, "/robots.txt"))
                text = self.read(urljoin(root, "/robots.txt"))
                parser.parse(_whole_delays((text or "").splitlines(), self.fractions))
                self.parsers[root] = parser
            return self.parsers[root]

    def allowed(self, url: str) -> bool:
        return not self.obey or self._parser(url).can_fetch(self.user_agent, url)

    def crawl_delay(self, url: str) -> float | None:
        """The host's Crawl-delay for our user agent, in seconds; None when it sets none."""
        if not self.obey:
            return None
        delay = self._parser(url).crawl_delay(self.user_agent)
        return self.fractions.get(delay, float(delay)) if delay is not None else None


_FRACTION_TOKENS = 10**12  # stand-ins start here, far above any real whole-second delay
_DELAY_LINE = re.compile(r"^(\s*crawl-delay\s*:\s*)(\d*\.\d+|\d+\.)(\s*(#.*)?)$", re.IGNORECASE)


def _whole_delays(lines: list[str], fractions: dict[int, float]) -> list[str]:
    """The lines with each fractional Crawl-delay (2.5) replaced by a stand-in whole number,
    noted in `fractions`: the standard library's parser keeps whole numbers only, and would
    drop a fractional delay (so collect faster than the site asks). Its group matching of
    user agents stays as it is."""
    out = []
    for line in lines:
        match = _DELAY_LINE.match(line)
        if match:
            token = _FRACTION_TOKENS + len(fractions)
            fractions[token] = float(match.group(2))
            line = f"{match.group(1)}{token}{match.group(3)}"
        out.append(line)
    return out


def with_backoff(call: Callable[[], T], policy: Politeness, what: str,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """call(), retried on RetryableError with doubling pauses up to the cap; then a clear FetchError.
    A Retry-After the host sent is obeyed by its gate, before the retry's turn."""
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
