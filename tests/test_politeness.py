"""Politeness per host on a fake clock (site pages 4-7 s apart, CDNs adaptive, Retry-After,
robots.txt Crawl-delay), then Retry-After and Crawl-delay against the real local stand-in."""

import email.utils
import itertools
import time

import pytest

from collectors.fetching import Session
from collectors.politeness import (
    CdnGate,
    FetchError,
    HostGates,
    RetryableError,
    Robots,
    SiteGate,
    retry_after_seconds,
    with_backoff,
)
from collectors.settings import CdnPoliteness, Politeness
from tests.fake_sites import FakeSites

SITE = "https://comic.naver.com/api/article/list?titleId=1"
CDN = "https://image-comic.pstatic.net/webtoon/1/thumb.jpg"


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gates(policy=None, crawl_delay=lambda url: None):
    clock = FakeClock()
    hosts = HostGates(policy or Politeness(), crawl_delay, clock)
    hosts.mark_site(SITE)
    return hosts, clock


def request(hosts, clock, url, latency=0.0, status=200, retry_after=None) -> float:
    gate = hosts.gate(url)
    started = gate.start(clock.sleep)
    clock.now += latency
    gate.finish(latency, status, retry_after)
    return started


def test_the_site_gets_one_request_every_four_to_seven_seconds_and_cdns_do_not_wait_for_it():
    hosts, clock = gates()
    starts = [request(hosts, clock, SITE, latency=0.3) for _ in range(20)]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(4.0 <= gap <= 7.0 for gap in gaps)
    before = clock.now
    request(hosts, clock, CDN)  # another host, another gate: only its own floor after robots.txt
    assert clock.now == pytest.approx(before + 0.25)
    assert isinstance(hosts.gate(SITE), SiteGate) and isinstance(hosts.gate(CDN), CdnGate)


def test_a_cdn_is_paced_by_latency_never_below_the_floor():
    hosts, clock = gates()
    fast = [request(hosts, clock, CDN, latency=0.05) for _ in range(10)]
    assert min(b - a for a, b in itertools.pairwise(fast)) == pytest.approx(0.25)
    slow_host = "https://slow.cdn.example/a.jpg"
    for _ in range(12):  # 1.2 s answers: the gap moves halfway to 1.2 / 2 each time
        request(hosts, clock, slow_host, latency=1.2)
    assert hosts.gate(slow_host).gap == pytest.approx(0.6, abs=0.01)
    assert hosts.gate(CDN).slots._value == CdnPoliteness().concurrency  # every slot handed back


def test_a_cdn_allows_a_few_downloads_in_flight_and_no_more():
    hosts, clock = gates(Politeness(cdn=CdnPoliteness(concurrency=3)))
    gate = hosts.gate(CDN)
    for _ in range(3):
        gate.start(clock.sleep)
    assert not gate.slots.acquire(blocking=False)  # a fourth waits for one to finish
    gate.finish(0.1, 200)
    assert gate.slots.acquire(blocking=False)


def test_429_and_503_halve_the_rate_and_retry_after_pauses_the_host():
    hosts, clock = gates()
    gate = hosts.gate(CDN)
    request(hosts, clock, CDN, status=429)
    assert gate.gap == pytest.approx(0.5)
    request(hosts, clock, CDN, status=503)
    assert gate.gap == pytest.approx(1.0)
    request(hosts, clock, CDN, status=404)  # not a request to slow down, not a good answer
    assert gate.gap == pytest.approx(1.0)
    asked = clock.now
    request(hosts, clock, CDN, status=429, retry_after=30.0)
    assert request(hosts, clock, CDN) >= asked + 30.0  # the next turn waits the host's word
    for _ in range(20):  # good answers bring it back to the floor
        request(hosts, clock, CDN, latency=0.05)
    assert gate.gap == pytest.approx(0.25)


def test_retry_after_is_obeyed_up_to_the_back_off_cap():
    hosts, clock = gates(Politeness(backoff_cap=60.0))
    asked = clock.now
    request(hosts, clock, SITE, status=503, retry_after=3600.0)
    assert asked + 60.0 <= request(hosts, clock, SITE) <= asked + 60.0 + 7.0


@pytest.mark.parametrize("url, delay, least", [(CDN, 2.0, 2.0), (CDN, 0.1, 0.25), (SITE, 12.0, 12.0)])
def test_robots_crawl_delay_wins_when_it_is_larger(url, delay, least):
    hosts, clock = gates(crawl_delay=lambda u: delay)
    starts = [request(hosts, clock, url, latency=0.01) for _ in range(6)]
    assert min(b - a for a, b in itertools.pairwise(starts)) >= least - 1e-9


def test_retry_after_header_forms():
    assert retry_after_seconds("120") == 120.0
    date = email.utils.formatdate(1796212830.0, usegmt=True)
    assert retry_after_seconds(date, now=lambda: 1796212800.0) == 30.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None


def test_a_fractional_crawl_delay_is_kept_for_the_agent_it_names():
    text = ("User-agent: *\nCrawl-delay: 10\n\nUser-agent: Stylefinder\nCrawl-delay: 2.5  # two and a half\n"
            "Disallow: /private/\n\nUser-agent: other\nCrawl-delay: .5\n")
    robots = Robots("Stylefinder/0.1", lambda url: text)
    assert robots.crawl_delay("http://h/x") == 2.5  # the standard parser alone drops it: None
    assert not robots.allowed("http://h/private/a") and robots.allowed("http://h/a")
    assert Robots("other", lambda url: text).crawl_delay("http://h/x") == 0.5
    assert Robots("someone", lambda url: text).crawl_delay("http://h/x") == 10.0
    assert Robots("x", lambda url: "User-agent: *\nCrawl-delay: soon\n").crawl_delay("http://h/") is None


def test_robots_rules_and_crawl_delay():
    robots = Robots("Stylefinder/0.1", lambda url: "User-agent: *\nCrawl-delay: 3\nDisallow: /private/\n")
    assert robots.allowed("http://h/api/x") and not robots.allowed("http://h/private/a.png")
    assert robots.crawl_delay("http://h/x") == 3.0
    assert Robots("x", lambda url: None).allowed("http://h/anything")
    assert Robots("x", lambda url: None).crawl_delay("http://h/anything") is None
    assert Robots("x", lambda url: "User-agent: *\nDisallow: /\n", obey=False).allowed("http://h/a")


def test_backoff_doubles_to_the_cap_then_gives_a_clear_error():
    pauses = []

    def always_busy():
        raise RetryableError("HTTP 429", 429)

    policy = Politeness(retries=5, backoff_base=2.0, backoff_cap=10.0)
    with pytest.raises(FetchError, match=r"naver: GET u: gave up after 6 attempts \(HTTP 429\)") as err:
        with_backoff(always_busy, policy, "naver: GET u", sleep=pauses.append)
    assert pauses == [2.0, 4.0, 8.0, 10.0, 10.0] and err.value.status == 429
    calls = iter([RetryableError("HTTP 503", 503), "ok"])

    def once_busy():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_backoff(once_busy, policy, "x", sleep=pauses.append) == "ok"


def test_a_real_429_with_retry_after_and_a_real_crawl_delay_are_obeyed():
    """Downloads from the local CDN stand-in: a 429 that asks for 2 s is retried 2 s later (the
    back-off alone would wait 0.01 s); the CDN's robots.txt Crawl-delay of 1 s spaces the rest
    (Python's robots.txt parser reads whole seconds only)."""
    with FakeSites() as sites:
        sites.robots["cdn"] = "User-agent: *\nCrawl-delay: 1\n"
        path = "/cdn/naver/101/1.png"
        sites.flaky_left[path] = (1, 429)
        sites.retry_after[path] = "2"
        session = Session("naver", None, "Stylefinder/test", Politeness(backoff_base=0.01))
        session.download(sites.cdn + path, sites.base + "/")
        for n in (2, 3, 4):
            session.download(f"{sites.cdn}/cdn/naver/101/{n}.png", sites.base + "/")
        times = [r["time"] for r in sites.log if r["path"].startswith("/cdn/")]
        assert len(times) == 5
        assert times[1] - times[0] >= 2.0 - 0.05  # Retry-After, not the 0.01 s back-off
        assert min(b - a for a, b in itertools.pairwise(times[1:])) >= 1.0 - 0.05
        assert time.monotonic() - times[0] < 12
