"""Top-k reports: the page and its copied pictures, contact sheets, bad files, the page in Chromium."""

import shutil
from contextlib import closing

import pytest
from PIL import Image

from tests.conftest import run_cli


@pytest.fixture(scope="module")
def report(tiny_run, tiny_bundle, tmp_path_factory):
    queries = tmp_path_factory.mktemp("queries")
    for name in ("a0t0_0.png", "a1t1_2.png", "a2t2_3.png"):
        shutil.copy(tiny_run[0] / name, queries / name)
    (queries / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    out = tmp_path_factory.mktemp("report") / "report"
    result = run_cli("inference.report", str(queries), "--bundle", str(tiny_bundle), "--top-k", "5",
                     "--out", str(out))
    return out, queries, result


def test_report_is_self_contained_with_a_sheet_per_query(report, tiny_bundle):
    out, queries, result = report
    assert result.returncode == 2  # one query was broken
    page = (out / "index.html").read_text()
    assert page.count('<section class="query">') == 3
    for name in ("a0t0_0.png", "a1t1_2.png", "a2t2_3.png"):
        assert str(queries / name) in page
    from inference.bundle import Bundle

    for title in Bundle.load(tiny_bundle).titles:  # k=5 of 6 titles: each appears at least once
        assert f"<b>{title.name}</b>" in page
    assert "http://" not in page and "https://" not in page and "file:" not in page
    assert str(queries / "broken.png") in page and "Unreadable images" in page
    for sub in ("queries", "sheets"):
        assert len(list((out / sub).glob("*.png"))) == 3
    assert len(list((out / "thumbs").glob("*.png"))) == 6  # every title of the tiny bundle, copied once
    with Image.open(out / "sheets" / "00000.png") as sheet:
        assert sheet.width >= 800 and sheet.height >= 400
    assert not out.with_name("report.tmp").exists()
    assert "report:" in result.stderr  # the progress bar
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error_lines == [f"error: {queries / 'broken.png'}: not an image (unrecognised format)"]


def test_report_replaces_an_old_one_only_when_complete(tiny_bundle, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old report")
    result = run_cli("inference.report", str(tmp_path / "nothing-here"), "--bundle", str(tiny_bundle),
                     "--out", str(out), check_exit=2)
    assert "no such file or folder" in result.stderr
    assert (out / "keep.txt").read_text() == "old report"


def _old_report(folder, files: int):
    folder.mkdir()
    (folder / "index.html").write_text("old report")
    pages = folder / "thumbs"
    pages.mkdir()
    for i in range(files):
        (pages / f"{i}.png").write_bytes(b"x")


@pytest.mark.parametrize("trial", range(3))
def test_a_kill_during_the_swap_leaves_one_complete_report_and_a_rerun_finishes(tiny_run, tiny_bundle,
                                                                                tmp_path, trial):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    out = tmp_path / "out"
    _old_report(out, 20_000)  # deleting the old report takes long enough to be caught at it
    old = out.with_name("out.old")
    command = [sys.executable, "-m", "inference.report", str(tiny_run[0] / "a0t0_0.png"), "--bundle",
               str(tiny_bundle), "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not old.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001 * trial)  # three different moments of the swap
    process.kill()
    process.wait()
    # One complete report at every moment: the new one, or the old one set aside.
    assert (out / "index.html").is_file() or (old / "index.html").read_text() == "old report"
    run_cli("inference.report", str(tiny_run[0] / "a1t1_2.png"), "--bundle", str(tiny_bundle), "--out",
            str(out), check_exit=0)
    assert "a1t1_2.png" in (out / "index.html").read_text() and not old.exists()


def test_an_interrupted_swap_is_finished_by_the_next_run(tmp_path):
    from inference.report import finish_interrupted_swap

    out, old = tmp_path / "out", tmp_path / "out.old"
    _old_report(old, 3)  # killed between the two renames: only the old report exists
    finish_interrupted_swap(out)
    assert (out / "index.html").read_text() == "old report" and not old.exists()
    _old_report(old, 3)  # killed while deleting the old report: the new one is in place
    finish_interrupted_swap(out)
    assert (out / "index.html").is_file() and not old.exists()


def test_report_page_renders_in_chromium(report):
    pytest.importorskip("selenium")
    from collectors.browser import open_browser

    out, _, _ = report
    with closing(open_browser()) as browser:
        browser.get((out / "index.html").as_uri())
        loaded = browser.execute_script(
            "return [...document.images].map(i => i.complete && i.naturalWidth > 0)")
        assert len(loaded) == 3 * (2 + 5) and all(loaded)  # query, its style map, 5 titles
        titles = browser.find_elements("css selector", "section.query figure.title")
        assert len(titles) == 15
        shot = out / "screenshot.png"
        browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000


def test_bad_bundle_and_top_k_are_one_line(tiny_run, tmp_path):
    image = str(tiny_run[0] / "a0t0_0.png")
    for args, message in ((["--bundle", str(tmp_path / "none")], "no such bundle folder"),
                          (["--top-k", "0"], "--top-k must be between 1 and 100")):
        result = run_cli("inference.report", image, "--out", str(tmp_path / "out"), *args, check_exit=2)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists() and not (tmp_path / "out.tmp").exists()
