"""A living catalog: reruns against a stand-in site that publishes episodes and ends a title between
runs, in real Chromium, with real downloads from a second (CDN) host."""

import itertools
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_cli
from tests.fake_sites import FakeSites

pytest.importorskip("selenium")

FAST = ["--min-delay", "0", "--max-delay", "0", "--backoff", "0.01", "--retries", "2", "--quiet",
        "--min-episodes", "2"]
IMAGES = ("SELECT t.source_id, i.position, i.sha256, i.source_url FROM images i JOIN titles t "
          "ON t.id = i.title_id ORDER BY 1, 2")


def weekly() -> tuple[dict, dict]:
    """Two ongoing titles and a finished one, in the stand-in's table form."""
    ongoing = {
        "201": ("Weekly Sun", "Oh Brush", "Oh Writer", [("판타지", "GENRE_FANTASY")], 4, "RATE_12", "MONDAY"),
        "202": ("Last Arc", "Ahn Ink", "Ahn Ink", [("드라마", "GENRE_DRAMA")], 3, "RATE_12", "TUESDAY"),
    }
    finished = {"203": ("Old Tale", "Min Pen", "Min Pen", [("일상", "GENRE_DAILY")], 2, "RATE_12", None)}
    return ongoing, finished


def collect(sites, catalog, *extra, check_exit=0):
    return run_cli("collectors", "naver", "--catalog", str(catalog), "--base-url", sites.base, *FAST, *extra,
                   check_exit=check_exit)


def rows(catalog, sql):
    with sqlite3.connect(catalog) as db:
        return db.execute(sql).fetchall()


def downloads(sites, since: int) -> list[str]:
    return [r["path"] for r in sites.log[since:] if r["host"] == "cdn" and r["path"] != "/robots.txt"]


def requests_per_title(sites, since: int) -> dict[str, int]:
    """titleId -> requests the site host saw for it (info and episode pages)."""
    counts: dict[str, int] = {}
    for request in sites.log[since:]:
        if "titleId=" in request["path"]:
            title = request["path"].split("titleId=")[1].split("&")[0]
            counts[title] = counts.get(title, 0) + 1
    return counts


def publish_and_end(ongoing: dict, finished: dict) -> None:
    """Between runs: 201 gets episode 5 and a new genre; 202 gets episode 4 and ends (it leaves
    the weekday list for the finished list)."""
    sun = ongoing["201"]
    ongoing["201"] = (*sun[:3], [("판타지", "GENRE_FANTASY"), ("액션", "GENRE_ACTION")], 5, *sun[5:])
    arc = ongoing.pop("202")
    finished["202"] = (*arc[:4], 4, arc[5], None)


def test_an_update_fetches_only_new_episodes_and_records_what_changed(tmp_path):
    ongoing, finished = weekly()
    with FakeSites(naver=ongoing, naver_finished=finished) as sites:
        catalog = tmp_path / "catalog.sqlite"
        first = collect(sites, catalog, "--finished")
        assert first.stdout.startswith("collected 9 images from 3 titles\nnew: 3 titles, 0 images")
        before = rows(catalog, IMAGES)
        publish_and_end(ongoing, finished)
        logged = len(sites.log)
        # Without --finished: the title that ended is still followed, being ongoing in the catalog.
        second = collect(sites, catalog)
        assert sorted(downloads(sites, logged)) == ["/cdn/naver/201/5.png", "/cdn/naver/202/4.png"]
        after = rows(catalog, IMAGES)
        assert set(before) <= set(after)
        assert len(after) == len(before) + 2 and len({r[3] for r in after}) == len(after)  # no image twice
        assert "new: 0 titles, 2 images of titles already in the catalog, 2 metadata changes" in second.stdout
        assert "changed naver Weekly Sun (201): genres 판타지 -> 액션; 판타지" in second.stdout
        assert "changed naver Last Arc (202): status ongoing -> finished" in second.stdout
        history = rows(catalog, "SELECT t.source_id, c.field, c.old, c.new FROM title_changes c "
                                "JOIN titles t ON t.id = c.title_id ORDER BY c.id")
        assert history == [("201", "genres", "판타지", "액션; 판타지"),
                           ("202", "status", "ongoing", "finished")]
        genres = rows(catalog, "SELECT g.name FROM title_genres tg JOIN genres g ON g.id = tg.genre_id "
                               "JOIN titles t ON t.id = tg.title_id WHERE t.source_id = '201' ORDER BY 1")
        assert genres == [("액션",), ("판타지",)]

        # Unchanged site: nothing downloaded, at most 3 requests per ongoing title, none for the
        # finished ones checked today.
        logged = len(sites.log)
        third = collect(sites, catalog, "--finished", "--min-delay", "0.4", "--max-delay", "0.4")
        site = [r["time"] for r in sites.log[logged:] if r["host"] == "site"]  # robots.txt included
        # Arrival times at the server: the gate spaces the moments requests start, and Chromium's
        # dispatch of a navigation adds to its arrival: tens of ms on a loaded 2-core CI machine, 150 ms
        # on one running at a third of its speed (a gap of 0.265 s after the page load). Each gap may
        # lose that once, the whole span only once; no gate at all would leave gaps of milliseconds.
        gaps = [b - a for a, b in itertools.pairwise(site)]
        assert min(gaps) >= 0.4 - 0.2, gaps
        assert site[-1] - site[0] >= 0.4 * len(gaps) - 0.2, gaps
        assert not downloads(sites, logged)
        assert requests_per_title(sites, logged) == {"201": 2}
        assert "new: 0 titles, 0 images of titles already in the catalog, 0 metadata changes" in third.stdout
        assert rows(catalog, IMAGES) == after

        # A finished title not checked for --refresh-days is read again (0: every run).
        logged = len(sites.log)
        collect(sites, catalog, "--finished", "--refresh-days", "0")
        assert set(requests_per_title(sites, logged)) == {"201", "202", "203"}


def test_a_title_gone_from_the_site_is_recorded_once_and_kept(tmp_path):
    ongoing, finished = weekly()
    with FakeSites(naver=ongoing, naver_finished=finished) as sites:
        catalog = tmp_path / "catalog.sqlite"
        collect(sites, catalog)
        before = rows(catalog, IMAGES)
        del ongoing["202"]  # the site answers 404 for it now
        gone = collect(sites, catalog)
        assert "changed naver Last Arc (202): status ongoing -> removed" in gone.stdout
        assert "skipped 1: title no longer on the site (HTTP 404)" in gone.stdout
        logged = len(sites.log)
        again = collect(sites, catalog)  # not followed any more, until --refresh-days
        assert "202" not in requests_per_title(sites, logged) and "changed" not in again.stdout
        assert rows(catalog, IMAGES) == before  # its images are kept
        history = rows(catalog, "SELECT field, old, new FROM title_changes")
        assert history == [("status", "ongoing", "removed")]


def test_a_kill_during_an_update_loses_nothing_and_duplicates_nothing(tmp_path):
    ongoing, finished = weekly()
    with FakeSites(naver=ongoing, naver_finished=finished, cdn_latency=(0.3, 0.3)) as sites:
        catalog = tmp_path / "killed" / "catalog.sqlite"
        collect(sites, catalog, "--finished")
        sun = ongoing["201"]
        ongoing["201"] = (*sun[:4], 12, *sun[5:])  # eight new episodes, slow to download
        reference = tmp_path / "reference" / "catalog.sqlite"
        collect(sites, reference, "--finished")
        images = catalog.parent / "images" / "naver" / "201"
        held, stored = len(list(images.glob("*.png"))), len(rows(catalog, IMAGES))
        victim = subprocess.Popen(
            [sys.executable, "-m", "collectors", "naver", "--catalog", str(catalog), "--base-url", sites.base,
             *FAST, "--cdn-concurrency", "1"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(images.glob("*.png"))) < held + 2:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        partial = rows(catalog, IMAGES)
        assert len(rows(reference, IMAGES)) > len(partial) > stored  # killed mid-update
        collect(sites, catalog, "--finished")
        assert [r[1:] for r in rows(catalog, IMAGES)] == [r[1:] for r in rows(reference, IMAGES)]
        assert not list(images.glob(".*.part"))  # nothing half written is left


def test_kakao_asks_only_past_the_episodes_it_holds_and_mal_says_what_is_airing(tmp_path):
    from tests import fake_sites

    with FakeSites() as sites:
        catalog = tmp_path / "catalog.sqlite"
        flags = ["--catalog", str(catalog), "--base-url", sites.base, *FAST]
        run_cli("collectors", "kakao", *flags, check_exit=0)
        saved = fake_sites.KAKAO["2001"]
        fake_sites.KAKAO["2001"] = (*saved[:4], 5, *saved[5:])
        try:
            logged = len(sites.log)
            result = run_cli("collectors", "kakao", *flags, check_exit=0)
        finally:
            fake_sites.KAKAO["2001"] = saved
        assert downloads(sites, logged) == ["/cdn/kakao/2001/5.webp"]
        asked = [r["path"] for r in sites.log[logged:] if "/contents/2001" in r["path"]]
        assert len(asked) == 2 and "offset=4&" in asked[1]  # the decorator, then past the 4 it holds
        assert "new: 0 titles, 1 images of titles already in the catalog" in result.stdout
        run_cli("collectors", "mal", *flags, check_exit=1)  # the stand-in's broken page fails, as it should
    status = dict(rows(catalog, "SELECT t.source || ' ' || t.source_id, i.value FROM title_info i "
                                "JOIN titles t ON t.id = i.title_id WHERE i.key = 'status'"))
    assert status["mal 7"] == "ongoing" and status["mal 1"] == "finished"
    assert status["kakao 2001"] == "ongoing"


@pytest.mark.parametrize("flags, message", [
    (["--cdn-concurrency", "0"], "--cdn-concurrency must be at least 1"),
    (["--cdn-min-gap", "2", "--cdn-max-gap", "1"], "need 0 <= min <= max"),
    (["--refresh-days", "-1"], "--refresh-days must be 0 or more"),
])
def test_bad_politeness_options_are_one_line(tmp_path, flags, message):
    result = run_cli("collectors", "naver", "--catalog", str(tmp_path / "c.sqlite"), *flags, check_exit=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "c.sqlite").exists()
