"""Fetching through one browser session: JSON the page itself would call, rendered pages, image downloads.

Every request waits its turn at its host's gate (collectors/politeness.py), asks robots.txt, and
is retried with back-off on 403, 429, 5xx and timeouts. JSON goes through `fetch()` inside the
page, so it carries the browser's cookies and origin; images come from the CDN with the Referer
it wants, from any thread (the collector downloads a few at a time per CDN host).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from collectors.politeness import (
    RETRY_STATUSES,
    FetchError,
    HostGates,
    RetryableError,
    Robots,
    retry_after_seconds,
    with_backoff,
)
from collectors.settings import Politeness, Timeouts

log = logging.getLogger(__name__)

_FETCH_SCRIPT = """
const [url, timeoutMs, done] = arguments;
const controller = new AbortController();
const timer = setTimeout(() => controller.abort(), timeoutMs);
fetch(url, {credentials: "include", signal: controller.signal, headers: {"Accept": "application/json"}})
  .then(async r => done({status: r.status, body: await r.text(), retryAfter: r.headers.get("Retry-After")}))
  .catch(e => done({status: 0, body: String(e), retryAfter: null}))
  .finally(() => clearTimeout(timer));
"""

# Chromium reports the HTTP status of the page it navigated to here.
_STATUS_SCRIPT = "const n = performance.getEntriesByType('navigation')[0]; return n ? n.responseStatus : 0;"


class SelectorError(FetchError):
    """A selector that matched nothing: the site changed, and its page object needs mending."""


class BlockedByRobots(FetchError):
    pass


class Session:
    """One site's requests through one browser; `driver` is a Selenium WebDriver."""

    def __init__(self, site: str, driver, user_agent: str, policy: Politeness | None = None,
                 timeouts: Timeouts | None = None, sleep: Callable[[float], None] = time.sleep):
        self.site, self.driver, self.user_agent = site, driver, user_agent
        policy = policy or Politeness()
        self.policy, self.timeouts, self.sleep = policy, timeouts or Timeouts(), sleep
        self.robots = Robots(user_agent, self._read_robots, policy.obey_robots)
        self.gates = HostGates(policy, self.robots.crawl_delay)
        self.origin: str | None = None

    @contextmanager
    def _turn(self, url: str, sleep: Callable[[float], None]) -> Iterator[dict]:
        """Wait for the host's turn; the caller fills in the answer's `status` and `retry_after`."""
        gate = self.gates.gate(url)
        gate.start(sleep)
        began = time.monotonic()
        answer: dict = {"status": None, "retry_after": None}
        try:
            yield answer
        finally:
            gate.finish(time.monotonic() - began, answer["status"], answer["retry_after"])

    # --- JSON through the page ----------------------------------------------------

    def get_json(self, url: str, page: str) -> dict:
        """GET url with fetch() from inside `page` (opened once: same origin, same cookies)."""
        from selenium.common.exceptions import TimeoutException

        origin = "{0.scheme}://{0.netloc}".format(urlsplit(page))
        if self.origin != origin:
            self.open_page(page)
            self.origin = origin
        self.gates.mark_site(url)
        self._check_robots(url)

        def attempt() -> dict:
            with self._turn(url, self.sleep) as turn:
                try:
                    answer = self.driver.execute_async_script(_FETCH_SCRIPT, url,
                                                              int(self.timeouts.script * 900))
                except TimeoutException:  # the script timeout, past the in-page abort
                    raise RetryableError(f"no answer within {self.timeouts.script:.0f} s") from None
                turn["status"] = answer["status"] or None
                turn["retry_after"] = retry_after_seconds(answer.get("retryAfter"))
            status = answer["status"]
            if status == 0 or status in RETRY_STATUSES:
                raise RetryableError(f"HTTP {status}" if status else f"no answer ({answer['body'][:120]})",
                                     status)
            if status >= 400:
                raise FetchError(f"{self.site}: GET {url}: HTTP {status}", status)
            try:
                return json.loads(answer["body"])
            except json.JSONDecodeError as err:
                raise FetchError(f"{self.site}: GET {url}: not JSON ({err.msg})") from None

        return with_backoff(attempt, self.policy, f"{self.site}: GET {url}", self.sleep)

    # --- rendered pages -------------------------------------------------------------

    def open_page(self, url: str) -> None:
        from selenium.common.exceptions import TimeoutException, WebDriverException

        self.gates.mark_site(url)
        self._check_robots(url)

        def attempt() -> None:
            with self._turn(url, self.sleep) as turn:
                try:
                    self.driver.get(url)
                except TimeoutException:
                    raise RetryableError(
                        f"page load timed out after {self.timeouts.page_load:.0f} s") from None
                except WebDriverException as err:
                    raise RetryableError((err.msg or "browser error").splitlines()[0]) from None
                status = turn["status"] = self.driver.execute_script(_STATUS_SCRIPT) or 200
            if status in RETRY_STATUSES:
                raise RetryableError(f"HTTP {status}", status)
            if status >= 400:
                raise FetchError(f"{self.site}: GET {url}: HTTP {status}", status)

        with_backoff(attempt, self.policy, f"{self.site}: GET {url}", self.sleep)
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))

    def select(self, css: str, attribute: str | None = None, required: bool = True) -> list[str]:
        """Text (or `attribute`) of every element matching `css` on the current page."""
        elements = self.driver.find_elements("css selector", css)
        values = [(e.get_attribute(attribute) if attribute else e.get_attribute("textContent")) or ""
                  for e in elements]
        values = [" ".join(v.split()) for v in values if v and v.strip()]
        if required and not values:
            raise SelectorError(f"{self.site}: selector {css!r} found nothing on {self.driver.current_url}")
        return values

    def scroll_until(self, css: str, attribute: str) -> str | None:
        """Scroll the first `css` element into view and wait for its lazy `attribute` (an http URL)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        elements = self.driver.find_elements("css selector", css)
        if not elements:
            return None
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", elements[0])
        try:
            return WebDriverWait(self.driver, self.timeouts.element).until(
                lambda _: (elements[0].get_attribute(attribute) or "").startswith("http")
                and elements[0].get_attribute(attribute))
        except TimeoutException:
            return None

    # --- images from the CDN --------------------------------------------------------

    def download(self, url: str, referer: str | None, sleep: Callable[[float], None] | None = None) -> bytes:
        """The bytes at `url`; thread-safe. `sleep`: how this thread waits (default the session's)."""
        self._check_robots(url)
        headers = {"User-Agent": self.user_agent, **({"Referer": referer} if referer else {})}
        sleep = sleep or self.sleep

        def attempt() -> bytes:
            with self._turn(url, sleep) as turn:
                request = urllib.request.Request(url, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=self.timeouts.download) as response:
                        turn["status"] = response.status
                        return response.read()
                except urllib.error.HTTPError as err:
                    turn["status"] = err.code
                    turn["retry_after"] = retry_after_seconds(err.headers.get("Retry-After"))
                    if err.code in RETRY_STATUSES:
                        raise RetryableError(f"HTTP {err.code}", err.code) from None
                    raise FetchError(f"{self.site}: download {url}: HTTP {err.code}", err.code) from None
                except (TimeoutError, urllib.error.URLError) as err:
                    raise RetryableError(f"{getattr(err, 'reason', err)}") from None

        return with_backoff(attempt, self.policy, f"{self.site}: download {url}", sleep)

    # --- robots.txt -----------------------------------------------------------------

    def _check_robots(self, url: str) -> None:
        if not self.robots.allowed(url):
            raise BlockedByRobots(f"{self.site}: robots.txt disallows {url}")

    def _read_robots(self, url: str) -> str | None:
        request = urllib.request.Request(url, headers={"User-Agent": self.user_agent})
        try:
            with urllib.request.urlopen(request, timeout=self.timeouts.download) as response:
                return response.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                return "User-agent: *\nDisallow: /\n"  # robots.txt convention: forbidden means all off
            return None
        except (TimeoutError, urllib.error.URLError) as err:
            log.warning("%s: robots.txt unreadable (%s); assuming allowed", url, err)
            return None
