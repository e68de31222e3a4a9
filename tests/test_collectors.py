"""Collectors in real headless Chromium against the local fake sites: records, politeness, faults, resume."""

import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from collectors.browser import BrowserConfig, BrowserError, open_browser
from collectors.politeness import FetchError, PoliteClock, RetryableError, Robots, with_backoff
from collectors.settings import Politeness
from tests.conftest import REPO, run_cli
from tests.fake_sites import FakeSites

pytest.importorskip("selenium")

FAST = ["--min-delay", "0", "--max-delay", "0", "--backoff", "0.01", "--retries", "2", "--quiet"]


@pytest.fixture(scope="module")
def sites():
    with FakeSites() as running:
        yield running


def collect(sites, site, catalog, *extra, check_exit=None):
    return run_cli("collectors", site, "--catalog", str(catalog), "--base-url", sites.base, *FAST, *extra,
                   check_exit=check_exit)


def rows(catalog, sql):
    with sqlite3.connect(catalog) as db:
        return db.execute(sql).fetchall()


IMAGES = ("SELECT t.source_id, i.position, i.sha256, i.source_url FROM images i JOIN titles t "
          "ON t.id = i.title_id ORDER BY 1, 2")


@pytest.fixture(scope="module")
def naver_run(sites, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("naver") / "catalog.sqlite"
    result = collect(sites, "naver", catalog, "--min-episodes", "2", "--finished")
    return catalog, result


def test_naver_collects_painters_genres_and_every_episode(naver_run):
    catalog, result = naver_run
    titles = rows(catalog, "SELECT t.source_id, t.name, a.name FROM titles t JOIN authors a "
                           "ON a.id = t.author_id ORDER BY 1")
    assert titles == [("101", "Sky Garden", "Kim Painter"), ("104", "Flaky Title", "Choi Ink"),
                      ("105", "Broken Thumb", "Jung Line"), ("107", "Private Art", "Yoon Paint"),
                      ("108", "Done Deal", "Kang Pen")]
    genres = rows(catalog, "SELECT g.name FROM title_genres tg JOIN genres g ON g.id = tg.genre_id "
                           "JOIN titles t ON t.id = tg.title_id WHERE t.source_id = '101' ORDER BY 1")
    assert genres == [("DRAMA",), ("FANTASY",)]
    images = rows(catalog, IMAGES)
    assert [(s, p) for s, p, _, _ in images] == [("101", 1), ("101", 2), ("101", 3), ("101", 4), ("104", 1),
                                                 ("104", 2), ("104", 3), ("105", 1), ("105", 3), ("108", 1),
                                                 ("108", 2)]
    files = list((catalog.parent / "images" / "naver").rglob("*.png"))
    assert len(files) == 11 and not list(catalog.parent.rglob("*.part"))
    assert "collected 11 images from 5 titles" in result.stdout


def test_naver_summary_says_what_was_skipped_and_failed_and_why(naver_run):
    catalog, result = naver_run
    assert result.returncode == 1  # one title failed for good
    out = result.stdout
    assert "skipped 1: adult title (needs a login)" in out
    assert "skipped 1: fewer than 2 episodes" in out
    assert "skipped 2: image disallowed by robots.txt" in out
    assert "quarantined 1 broken downloads" in out and "/cdn/naver/105/2.png" in out
    assert (catalog.parent / "images" / "quarantine" / "naver-105-00002.bin").is_file()
    failed = [line for line in out.splitlines() if "Down Title" in line]
    assert len(failed) == 1 and "info?titleId=106: gave up after 3 attempts (HTTP 503)" in failed[0]
    assert "HTTP 429; retrying" in result.stderr  # the flaky list came through on the second try


def test_requests_carry_referer_user_agent_and_asked_robots_first(sites, naver_run):
    images = sites.requests("/cdn/naver/")
    assert images and all(r["headers"]["Referer"].rstrip("/") == sites.base for r in images)
    assert all(r["headers"]["User-Agent"].startswith("Stylefinder/") for r in images)
    assert sites.requests("/robots.txt")
    assert not sites.requests("/private/")  # robots.txt forbids it: never fetched


def test_rerun_downloads_nothing_and_duplicates_nothing(sites, naver_run):
    catalog, _ = naver_run
    before = rows(catalog, IMAGES)
    downloads = len(sites.requests("/cdn/"))
    result = collect(sites, "naver", catalog, "--min-episodes", "2", "--finished")
    assert rows(catalog, IMAGES) == before
    new = [r["path"] for r in sites.requests("/cdn/")[downloads:]]
    assert new == ["/cdn/naver/105/2.png"]  # only the quarantined one is tried again
    assert "title already complete in the catalog" in result.stdout


def test_kill_and_rerun_loses_nothing_and_duplicates_nothing(sites, tmp_path):
    reference = tmp_path / "reference" / "catalog.sqlite"
    collect(sites, "naver", reference, "--min-episodes", "2", "--weekday", "mon")
    catalog = tmp_path / "killed" / "catalog.sqlite"
    command = [sys.executable, "-m", "collectors", "naver", "--catalog", str(catalog), "--base-url",
               sites.base, "--min-episodes", "2", "--weekday", "mon", "--min-delay", "0.3",
               "--max-delay", "0.4", "--quiet"]
    victim = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((catalog.parent / "images").rglob("*.png"))) < 2:
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    partial = rows(catalog, IMAGES)
    assert 0 < len(partial) < len(rows(reference, IMAGES))
    collect(sites, "naver", catalog, "--min-episodes", "2", "--weekday", "mon", check_exit=0)
    assert [r[1:] for r in rows(catalog, IMAGES)] == [r[1:] for r in rows(reference, IMAGES)]


def test_kakao_takes_the_illustrator_as_author(sites, tmp_path):
    catalog = tmp_path / "catalog.sqlite"
    result = collect(sites, "kakao", catalog, "--min-episodes", "2", "--timeout", "2", check_exit=0)
    titles = rows(catalog, "SELECT t.name, a.name FROM titles t JOIN authors a ON a.id = t.author_id "
                           "ORDER BY 1")
    assert titles == [("Blue Harbor", "Drawer Lee"), ("Green Field", "Solo Artist")]
    assert "skipped 1: adult title (needs a login)" in result.stdout
    assert "collected 5 images from 2 titles" in result.stdout
    genres = rows(catalog, "SELECT g.name FROM genres g ORDER BY 1")
    assert ("romance",) in genres and ("daily",) in genres
    assert "decorator/contents/2003: HTTP 500; retrying" in result.stderr  # then succeeded
    assert "cdn/kakao/2001/2.png: timed out; retrying" in result.stderr  # the hanging image, then fine
    assert [p for _, p, _, _ in rows(catalog, IMAGES)] == [1, 2, 3, 1, 2]
    offsets = [r["path"] for r in sites.requests("/episode/") if "contents/2001/" in r["path"]]
    assert any("offset=2" in path for path in offsets)  # the server's page cap forced a second page


def test_kakao_weekday_and_min_episodes(sites, tmp_path):
    result = collect(sites, "kakao", tmp_path / "c.sqlite", "--weekday", "mon", check_exit=0)
    assert "skipped 1: fewer than 200 episodes" in result.stdout  # the default for webtoons


@pytest.fixture(scope="module")
def mal_run(sites, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("mal") / "catalog.sqlite"
    return catalog, collect(sites, "mal", catalog)


def test_mal_reads_posters_labels_and_info(mal_run):
    catalog, _ = mal_run
    titles = rows(catalog, "SELECT t.source_id, t.name, a.name FROM titles t LEFT JOIN authors a "
                           "ON a.id = t.author_id ORDER BY 1")
    assert titles == [("1", "Star Lancer", "Studio Orbit"), ("2", "Quiet Tea", "Leaf Works"),
                      ("6", "Deep Scroll", "Scroll House")]
    kinds = rows(catalog, "SELECT g.kind, g.name FROM title_genres tg JOIN genres g ON g.id = tg.genre_id "
                          "JOIN titles t ON t.id = tg.title_id WHERE t.source_id = '1' ORDER BY 1, 2")
    assert kinds == [("demographic", "Seinen"), ("genre", "Action"), ("genre", "Sci-Fi"), ("theme", "Space")]
    info = dict(rows(catalog, "SELECT i.key, i.value FROM title_info i JOIN titles t ON t.id = i.title_id "
                              "WHERE t.source_id = '1'"))
    assert info["type"] == "TV" and info["score"] == "8.71" and info["members"] == "1234567"
    assert info["synopsis_placeholder"] == "0"
    placeholder = rows(catalog, "SELECT i.value FROM title_info i JOIN titles t ON t.id = i.title_id "
                                "WHERE t.source_id = '2' AND i.key = 'synopsis_placeholder'")
    assert placeholder == [("1",)]
    posters = rows(catalog, IMAGES)
    # 1 from og:image, 2 from the lazy data-src, 6 from the src set only once scrolled into view
    assert [p[3].rsplit("/", 3)[-3:] for p in posters] == [["mal", "1", "0.png"], ["mal", "2", "0.png"],
                                                            ["mal", "6", "0.png"]]


def test_mal_drops_ona_and_unknown_and_names_a_broken_selector(sites, mal_run):
    _, result = mal_run
    assert result.returncode == 1
    assert "skipped 1: type ONA" in result.stdout and "skipped 1: type Unknown" in result.stdout
    broken = next(line for line in result.stdout.splitlines() if "Changed Layout" in line)
    assert f"mal: selector 'h1.title-name' found nothing on {sites.base}/anime/5" in broken


def test_mal_keep_types_and_max_titles(sites, tmp_path):
    catalog = tmp_path / "catalog.sqlite"
    collect(sites, "mal", catalog, "--keep-types", "ONA", "--max-titles", "3")
    assert [r[0] for r in rows(catalog, "SELECT source_id FROM titles ORDER BY 1")] == ["1", "2", "3"]


def test_polite_clock_waits_four_to_seven_seconds_per_host():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    clock = PoliteClock(Politeness(), sleep=sleep, clock=lambda: now[0])
    for _ in range(20):
        clock.wait("https://comic.naver.com/api/x")
    clock.wait("https://image-comic.pstatic.net/a.jpg")  # another host: no wait
    assert len(slept) == 19 and all(4.0 <= s <= 7.0 for s in slept)


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


def test_robots_rules():
    robots = Robots("Stylefinder/0.1", lambda url: "User-agent: *\nDisallow: /private/\n")
    assert robots.allowed("http://h/api/x") and not robots.allowed("http://h/private/a.png")
    assert Robots("x", lambda url: None).allowed("http://h/anything")
    assert Robots("x", lambda url: "User-agent: *\nDisallow: /\n", obey=False).allowed("http://h/a")


def test_browser_errors_are_one_line(tmp_path):
    with pytest.raises(BrowserError, match="none: no such chromedriver"):
        open_browser(BrowserConfig(chromedriver=str(tmp_path / "none")))
    result = run_cli("collectors", "mal", "--catalog", str(tmp_path / "c.sqlite"), "--remote",
                     "http://127.0.0.1:9/wd/hub", *FAST, check_exit=2)
    assert result.stderr.startswith("error: could not start Chromium at http://127.0.0.1:9/wd/hub")
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_catalog_is_one_line_and_untouched(sites, tmp_path):
    notes = tmp_path / "notes.sqlite"
    notes.write_text("not a database at all")
    result = collect(sites, "naver", notes, check_exit=2)
    assert str(notes) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert notes.read_text() == "not a database at all"
    assert not (tmp_path / "images").exists()


@pytest.mark.parametrize("flags, message", [
    (["--timeout", "0"], "--timeout must be positive"),
    (["--min-delay", "5", "--max-delay", "1"], "need 0 <= min <= max"),
])
def test_bad_options_are_one_line(tmp_path, flags, message):
    result = run_cli("collectors", "naver", "--catalog", str(tmp_path / "c.sqlite"), *flags, check_exit=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.sqlite").exists()
