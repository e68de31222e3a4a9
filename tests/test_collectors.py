"""Collectors in real headless Chromium against the local fake sites: records, politeness, faults, resume."""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.browser import BrowserConfig, BrowserError, open_browser
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


def rows(catalog, sql, parameters=()):
    with sqlite3.connect(catalog) as db:
        return db.execute(sql, parameters).fetchall()


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
                      ("108", "Done Deal", "Kang Pen"), ("110", "Tags Only", "Seo Pen")]
    # The GENRE_ tags' Korean names; CUSTOM_TAG ("명작") and NOVEL_ORIGIN tags are not genres.
    assert genre_names(catalog, "101") == ["드라마", "판타지"]
    assert genre_names(catalog, "110") == []
    images = rows(catalog, IMAGES)
    assert [(s, p) for s, p, _, _ in images] == [("101", 1), ("101", 2), ("101", 3), ("101", 4), ("104", 1),
                                                 ("104", 2), ("104", 3), ("105", 1), ("105", 3), ("108", 1),
                                                 ("108", 2), ("109", 1), ("109", 2), ("110", 1), ("110", 2)]
    files = list((catalog.parent / "images" / "naver").rglob("*.png"))
    assert len(files) == 15 and not list(catalog.parent.rglob("*.part"))
    assert "collected 15 images from 7 titles" in result.stdout


GENRES_OF = ("SELECT g.kind, g.name FROM title_genres tg JOIN genres g ON g.id = tg.genre_id "
             "JOIN titles t ON t.id = tg.title_id WHERE t.source_id = ? ORDER BY 1, 2")
COMPLETE = ("SELECT t.source_id FROM titles t JOIN title_info i ON i.title_id = t.id "
            "WHERE i.key = 'collector_complete' AND i.value = '1' ORDER BY 1")


def genre_names(catalog, source_id: str) -> list[str]:
    return sorted(name for kind, name in rows(catalog, GENRES_OF, (source_id,)) if kind == "genre")


def complete_titles(catalog) -> list[str]:
    return [s for (s,) in rows(catalog, COMPLETE)]


def test_naver_titles_missing_a_field_are_stored_incomplete_and_reported(naver_run):
    catalog, result = naver_run
    out = result.stdout
    assert "incomplete 2 titles (stored, read again on the next run):" in out
    assert "No Artists (109): no communityArtists: no author" in out
    assert "Tags Only (110): no GENRE_* tag in curationTagList: no genres" in out
    assert "109" not in complete_titles(catalog) and "110" not in complete_titles(catalog)
    assert {"101", "104", "108"} <= set(complete_titles(catalog))
    assert rows(catalog, "SELECT author_id FROM titles WHERE source_id = '109'") == [(None,)]


def test_naver_summary_says_what_was_skipped_and_failed_and_why(naver_run):
    catalog, result = naver_run
    assert result.returncode == 1  # one title failed for good
    out = result.stdout
    assert "skipped 1: adult title (needs a login)" in out  # age.type RATE_18 in the info
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
    """An unchanged site: ongoing titles are read again at a few requests each, the finished one
    not at all, and nothing is downloaded but the image that was broken."""
    catalog, _ = naver_run
    before = rows(catalog, IMAGES)
    downloads, logged = len(sites.requests("/cdn/")), len(sites.log)
    result = collect(sites, "naver", catalog, "--min-episodes", "2", "--finished")
    assert rows(catalog, IMAGES) == before
    new = [r["path"] for r in sites.requests("/cdn/")[downloads:]]
    assert new == ["/cdn/naver/105/2.png"]  # only the quarantined one is tried again
    assert "title finished, complete and checked within 6 days" in result.stdout
    assert "new: 0 titles, 0 images of titles already in the catalog, 0 metadata changes" in result.stdout
    assert "incomplete 2 titles" in result.stdout  # read again, still missing their fields
    per_title: dict[str, int] = {}
    for request in sites.log[logged:]:
        if "titleId=" in request["path"]:
            title = request["path"].split("titleId=")[1].split("&")[0]
            per_title[title] = per_title.get(title, 0) + 1
    complete = set(complete_titles(catalog))
    assert "108" not in per_title  # finished, complete, checked today
    assert all(per_title[t] <= 2 for t in complete if t in per_title), per_title  # info + newest page


def test_a_rerun_repairs_an_incomplete_title(sites, tmp_path):
    from tests import fake_sites

    catalog = tmp_path / "catalog.sqlite"
    collect(sites, "naver", catalog, "--min-episodes", "2", "--weekday", "wed")
    assert "110" not in complete_titles(catalog)
    saved = fake_sites.NAVER["110"]
    fake_sites.NAVER["110"] = (*saved[:3], [("힐링", "CUSTOM_TAG"), ("드라마", "GENRE_DRAMA")], *saved[4:])
    try:
        result = collect(sites, "naver", catalog, "--min-episodes", "2", "--weekday", "wed")
    finally:
        fake_sites.NAVER["110"] = saved
    assert "110" in complete_titles(catalog) and genre_names(catalog, "110") == ["드라마"]
    assert "Tags Only" not in result.stdout.split("incomplete")[-1] or "incomplete" not in result.stdout


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
    from datasets.reaper import descendants, start_time

    browsers = descendants(victim.pid)  # chromedriver, Chromium and the reaper's own watch
    assert browsers
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(start_time(p) == t for p, t in browsers.items()):
        time.sleep(0.1)
    assert not [p for p, t in browsers.items() if start_time(p) == t]  # nothing outlives the kill
    partial = rows(catalog, IMAGES)
    assert 0 < len(partial) < len(rows(reference, IMAGES))
    collect(sites, "naver", catalog, "--min-episodes", "2", "--weekday", "mon", check_exit=0)
    assert [r[1:] for r in rows(catalog, IMAGES)] == [r[1:] for r in rows(reference, IMAGES)]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_collector_cleanly_and_the_same_command_resumes(sites, tmp_path, signum):
    """SIGTERM or SIGINT during a polite pause: the run stops within seconds, with the browser,
    keeps every image it stored, says in one line where it stopped and how to resume, and exits
    128 + the signal; the same command then finishes the catalog as an uninterrupted run would."""
    reference = tmp_path / "reference" / "catalog.sqlite"
    collect(sites, "naver", reference, "--min-episodes", "2", "--weekday", "mon")
    catalog = tmp_path / "stopped" / "catalog.sqlite"
    arguments = ["naver", "--catalog", str(catalog), "--base-url", sites.base, "--min-episodes", "2",
                 "--weekday", "mon"]
    victim = subprocess.Popen([sys.executable, "-m", "collectors", *arguments, "--min-delay", "2",
                               "--max-delay", "2", "--quiet"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((catalog.parent / "images").rglob("*.png")):
        time.sleep(0.05)
    from datasets.reaper import descendants, start_time

    browsers = descendants(victim.pid)
    victim.send_signal(signum)
    out, err = victim.communicate(timeout=15)  # a pause is 2 s: the stop must not wait it out
    assert victim.returncode == 128 + signum, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"stopped by {signal.Signals(signum).name} after ")
    assert last.endswith("the same command resumes (stored images are kept, never fetched again)")
    assert "Traceback" not in err and out.startswith("collected ")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(start_time(p) == t for p, t in browsers.items()):
        time.sleep(0.1)
    assert not [p for p, t in browsers.items() if start_time(p) == t]  # the browser quit with it
    partial = rows(catalog, IMAGES)
    assert 0 < len(partial) < len(rows(reference, IMAGES))
    collect(sites, *arguments[:1], catalog, *arguments[3:], check_exit=0)
    assert [r[1:] for r in rows(catalog, IMAGES)] == [r[1:] for r in rows(reference, IMAGES)]


def test_a_run_ends_the_browsers_an_earlier_run_left_when_its_reaper_died_too(sites, tmp_path):
    """The collector and its reaper both killed (as by an OOM killer taking the group): Chromium
    lives on. The next collection into the same folder ends those processes, found by the pids
    and start times the dead run recorded, and touches nothing else."""
    catalog = tmp_path / "catalog.sqlite"
    arguments = ["naver", "--catalog", str(catalog), "--base-url", sites.base, "--min-episodes", "2",
                 "--weekday", "mon"]
    victim = subprocess.Popen([sys.executable, "-m", "collectors", *arguments, "--min-delay", "0.3",
                               "--max-delay", "0.4", "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((catalog.parent / "images").rglob("*.png")):
        time.sleep(0.05)
    from datasets.reaper import descendants, start_time

    processes = descendants(victim.pid)
    reaper = [p for p in processes if "datasets.reaper import watch" in
              (Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace") if start_time(p) else "")]
    assert len(reaper) == 1
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        os.kill(reaper[0], signal.SIGKILL)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        time.sleep(1)
        left = {p: t for p, t in processes.items() if start_time(p) == t}
        assert left  # the browser outlived both: what the record is for
        collect(sites, *arguments[:1], catalog, *arguments[3:], check_exit=0)
        assert not [p for p, t in left.items() if start_time(p) == t]
        assert bystander.poll() is None
        assert not list((catalog.parent / "images").glob(".browsers-*.json"))  # each run removes its own
    finally:
        bystander.kill()
        bystander.wait()
        for pid, started in processes.items():  # in case the check failed: leave nothing behind
            if start_time(pid) == started:
                os.kill(pid, signal.SIGKILL)


def test_kakao_takes_the_illustrator_as_author(sites, tmp_path):
    catalog = tmp_path / "catalog.sqlite"
    result = collect(sites, "kakao", catalog, "--min-episodes", "2", "--timeout", "2", check_exit=0)
    titles = rows(catalog, "SELECT t.name, a.name FROM titles t JOIN authors a ON a.id = t.author_id "
                           "ORDER BY 1")
    # ILLUSTRATOR over AUTHOR; never PUBLISHER or ORIGINAL_STORY.
    assert titles == [("Blue Harbor", "Drawer Lee"), ("Green Field", "Solo Artist")]
    assert "skipped 1: adult title (needs a login)" in result.stdout
    assert "collected 5 images from 2 titles" in result.stdout
    assert "skipped 1: episode without asset.thumbnailImage" in result.stdout
    # The decorator's one genre string, then the card's seoKeywords.
    assert genre_names(catalog, "2001") == ["드라마", "로맨스"] and genre_names(catalog, "2003") == ["일상"]
    assert "decorator/contents/2003: HTTP 500; retrying" in result.stderr  # then succeeded
    assert "cdn/kakao/2001/2.webp: timed out; retrying" in result.stderr  # the hanging image, then fine
    images = rows(catalog, IMAGES)
    assert [p for _, p, _, _ in images] == [1, 2, 3, 1, 2]
    assert all(url.endswith(".webp") for _, _, _, url in images)  # the bare asset URL is a 404
    offsets = [r["path"] for r in sites.requests("/episode/") if "contents/2001/" in r["path"]]
    # Paged by the top-level meta.pagination.last, past the server's cap of 2 per request.
    assert any("offset=2" in path for path in offsets)
    assert set(complete_titles(catalog)) == {"2001", "2003"}


def test_a_run_that_collects_nothing_fails_and_says_why(sites, tmp_path):
    result = collect(sites, "kakao", tmp_path / "c.sqlite", "--weekday", "mon", check_exit=1)
    assert "skipped 1: fewer than 200 episodes" in result.stdout  # the default for webtoons
    assert "error: collected nothing: no title was read (1 adult title (needs a login), " \
           "1 fewer than 200 episodes)" in result.stderr


def test_collected_nothing_counts_several_titles_without_images():
    from collectors.records import Summary

    assert Summary(titles=0).collected_nothing()
    assert Summary(titles=4, images=0, failed=["x"] * 73).collected_nothing()
    assert not Summary(titles=1, images=0).collected_nothing()  # one title may simply have none yet
    rerun = Summary(titles=4, images=0, skipped={"title already complete in the catalog": 4})
    assert not rerun.collected_nothing()
    broken = Summary(titles=4, failed=["x"] * 73)
    assert "4 titles read but 0 images stored (73 failed" in broken.why_nothing()


@pytest.fixture(scope="module")
def mal_run(sites, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("mal") / "catalog.sqlite"
    return catalog, collect(sites, "mal", catalog)


def test_mal_reads_posters_labels_and_info(mal_run):
    catalog, _ = mal_run
    titles = rows(catalog, "SELECT t.source_id, t.name, a.name FROM titles t LEFT JOIN authors a "
                           "ON a.id = t.author_id ORDER BY 1")
    # "Studios: None found, add some" is no studio: no author named "add some".
    assert titles == [("1", "Star Lancer", "Studio Orbit"), ("2", "Quiet Tea", "Leaf Works"),
                      ("6", "Deep Scroll", "Scroll House"), ("7", "Indie Short", None)]
    assert not rows(catalog, "SELECT name FROM authors WHERE name LIKE '%add some%'")

    def kinds(source_id):
        return rows(catalog, GENRES_OF, (source_id,))

    # "Theme:" and "Demographic:" (one entry each) beside "Genres:".
    assert kinds("1") == [("demographic", "Seinen"), ("genre", "Action"), ("genre", "Sci-Fi"),
                          ("theme", "Space")]
    assert kinds("2") == [("genre", "Slice of Life")]  # "Genre:", singular
    assert kinds("6") == [("demographic", "Shounen"), ("genre", "Adventure")]
    assert set(complete_titles(catalog)) == {"1", "2", "6", "7"}
    info = dict(rows(catalog, "SELECT i.key, i.value FROM title_info i JOIN titles t ON t.id = i.title_id "
                              "WHERE t.source_id = '1'"))
    assert info["type"] == "TV" and info["score"] == "8.71" and info["members"] == "1234567"
    assert info["synopsis_placeholder"] == "0"
    placeholder = rows(catalog, "SELECT i.value FROM title_info i JOIN titles t ON t.id = i.title_id "
                                "WHERE t.source_id = '2' AND i.key = 'synopsis_placeholder'")
    assert placeholder == [("1",)]
    from datasets.catalog import Catalog

    with Catalog(catalog) as opened:  # the texts later stages read: the placeholder is none
        assert opened.title_texts() == {"Star Lancer": "A pilot crosses the stars.", "Deep Scroll": "Down.",
                                        "Indie Short": "Small."}
    posters = rows(catalog, IMAGES)
    # 1 and 7 from og:image, 2 from the lazy data-src, 6 from the src set only once scrolled into view
    assert [p[3].rsplit("/", 3)[-3:] for p in posters] == [["mal", "1", "0.png"], ["mal", "2", "0.png"],
                                                            ["mal", "6", "0.png"], ["mal", "7", "0.png"]]


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
