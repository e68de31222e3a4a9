"""Style maps: windows of the image through the bundle's own model, `--explain`, mixed styles and
the report; bad input is one line. The API's `explain=1` is tested in test_webapp.py, the query
path without TensorFlow in test_inference.py."""

import csv
import json

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inference.style_map import build_style_map, mixed_summary, voting_windows, window_layout
from tests.conftest import run_cli, train_cli


def test_windows_are_the_largest_squares_that_fit_twice_along_the_long_side():
    square = window_layout(128, 128)
    assert (square.rows, square.cols, len(square.windows)) == (4, 4, 9)
    assert square.box(0, 0) == (0, 0, 64, 64) and square.box(2, 2) == (64, 64, 128, 128)  # the quadrants
    pair = window_layout(128, 64)
    assert (pair.rows, pair.cols, len(pair.windows)) == (2, 4, 3)
    assert pair.box(0, 0) == (0, 0, 64, 64) and pair.box(0, 2) == (64, 0, 128, 64)  # the two panels
    strip = window_layout(100, 5000)  # a long webtoon strip: full-width squares, at most 16 cells down
    assert (strip.cols, strip.rows) == (2, 16)


def test_tiny_and_extreme_images_get_whole_pixel_windows_and_an_overlay():
    from inference.style_overlay import MAX_SIDE, render_overlay

    for width, height in ((1, 1), (3, 1000), (5000, 2)):
        layout = window_layout(width, height)
        boxes = [layout.box(r, c) for r, c in layout.windows]
        assert all(0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height for x0, y0, x1, y1 in boxes)
        found = build_style_map(layout, np.full((len(boxes), 3), 1 / 3), ["ann", "bo", "cy"])
        overlay = render_overlay(Image.new("RGB", (width, height), "white"), found.to_dict(), [])
        assert max(overlay.width, overlay.height - 16 * 4 - 8) <= MAX_SIDE


def test_mixed_needs_confident_windows_apart_and_each_a_region():
    layout = window_layout(64, 32)  # windows: left panel, middle, right panel
    names = ["ann", "bo", "cy"]
    two = build_style_map(layout, np.array([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [0.1, 0.85, 0.05]]), names)
    assert [(m["author"], m["where"]) for m in two.mixed] == [("ann", "left"), ("bo", "right")]
    assert sum(m["share"] for m in two.mixed) == pytest.approx(1.0)
    assert mixed_summary(two.mixed) == "mixed styles: ann (left 50 %), bo (right 50 %)"
    assert two.boxes["ann"] == [0, 0, 32, 32] and two.boxes["bo"] == [32, 0, 64, 32]
    eight = [*names, "di", "ed", "fa", "gu", "ho"]
    flat = np.full((3, 8), 0.12)
    flat[0, 0] = flat[2, 1] = 0.14  # likeliest, but under MIXED_CONFIDENCE
    unsure = build_style_map(layout, flat, eight)
    assert unsure.mixed == () and mixed_summary(unsure.mixed) == ""  # no window is confident
    windows = np.array([[0.9, 0.05, 0.05], [0.4, 0.4, 0.2], [0.1, 0.85, 0.05]])
    unknown = build_style_map(layout, windows, names, votes=np.array([True, True, False]))
    assert unknown.mixed == ()  # the right window looks like no known title: it does not vote
    # The right panel's author is strongest in the window straddling both panels, which looks like
    # no known picture: its strongest voting window is the right panel's, apart from the left's.
    straddling = np.array([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.8, 0.1]])
    assert build_style_map(layout, straddling, names).mixed == ()  # had the straddle voted
    across = build_style_map(layout, straddling, names, votes=np.array([True, False, True]))
    assert {m["author"] for m in across.mixed} == {"ann", "bo"}
    # A detail of one picture looks less like a known title than the whole: it does not vote; a
    # panel of a collage looks more like one than the collage does: it votes.
    assert voting_windows(np.array([0.8, 0.75, 0.5, 0.65])).tolist() == [True, False, True]
    assert voting_windows(np.array([0.4, 0.6, 0.15, 0.43])).tolist() == [True, False, True]
    # Named differently but alike: two parts of one picture, not two styles.
    alike = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]])  # cosine left-right 0.6
    assert build_style_map(layout, windows, names, embeddings=alike).mixed == ()
    unalike = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])  # cosine 0
    assert {m["author"] for m in build_style_map(layout, windows, names, embeddings=unalike).mixed} == {
        "ann", "bo"}
    one = build_style_map(layout, np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.7, 0.2, 0.1]]), names)
    assert one.mixed == ()
    assert one.grid == (2, 4) and next(iter(one.authors)) == "ann" and len(one.authors) == 3


def two_styles(author: int, index: int) -> Image.Image:
    """Solid, plainly different styles: dark with thin stripes, or light with a large disc."""
    rng = np.random.default_rng(index)
    if author == 0:
        pixels = np.full((24, 24, 3), rng.integers(20, 60), np.uint8)
        pixels[:: 3 + index % 2] = rng.integers(150, 230, 3)
        return Image.fromarray(pixels)
    image = Image.new("RGB", (24, 24), tuple(int(c) for c in rng.integers(200, 256, 3)))
    shift = int(rng.integers(-3, 4))
    ink = tuple(int(c) for c in rng.integers(0, 90, 3))
    ImageDraw.Draw(image).ellipse((4 + shift, 4, 19 + shift, 19), fill=ink)
    return image


@pytest.fixture(scope="module")
def two_style_bundle(tmp_path_factory):
    """A tiny bundle that tells the two styles apart (the shared tiny run is too short to)."""
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("two-styles")
    rows = {"train": [], "val": []}
    for author in (0, 1):
        for index in range(24):
            name = f"s{author}_{index}.png"
            two_styles(author, index).save(folder / name)
            rows["val" if index % 4 == 0 else "train"].append(
                {"image": name, "title": f"t{author}{index % 2}", "author": f"style{author}"})
    for split, items in rows.items():
        with open(folder / f"{split}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "title", "author"])
            writer.writeheader()
            writer.writerows(items)
    train_cli("--preset", "tiny", "--manifest", str(folder / "train.csv"), "--val-manifest",
              str(folder / "val.csv"), "--out-dir", str(folder / "runs"), "--name", "two", "--quiet",
              "--set", "train.epochs=20", "--set", "train.early_stopping_patience=20", "--set",
              "train.learning_rate=0.01", "--set", "model.dropout=0.0")
    return folder / "runs" / "two" / "bundle"


def _collage(bundle, tmp_path):
    """An unseen image of each style, side by side at their own size; the bundle names each alone."""
    from inference.query import StyleFinder

    finder = StyleFinder(bundle)
    left, right = two_styles(0, 101), two_styles(1, 102)
    assert [finder.query([im], 1)[0].authors[0].name for im in (left, right)] == ["style0", "style1"]
    collage = Image.new("RGB", (48, 24))
    collage.paste(left, (0, 0))
    collage.paste(right, (24, 0))
    path = tmp_path / "pair.png"
    collage.save(path)
    return path


def test_a_collage_of_two_styles_points_each_half_the_right_way(two_style_bundle, tmp_path):
    collage = _collage(two_style_bundle, tmp_path)
    maps = tmp_path / "maps"
    result = run_cli("inference.similar", str(collage), "--bundle", str(two_style_bundle), "--explain",
                     str(maps), "--json", check_exit=0)
    answer = json.loads(result.stdout)["results"][0]
    style_map = answer["style_map"]
    assert style_map["grid"] == [2, 4] and set(style_map["authors"]) == {"style0", "style1"}
    for author, half in (("style0", range(0, 2)), ("style1", range(2, 4))):
        cells = np.array(style_map["authors"][author])
        assert cells.shape == (2, 4)
        assert np.unravel_index(cells.argmax(), cells.shape)[1] in half, (author, cells)
        x0, y0, x1, y1 = style_map["box"][author]
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 24
        assert (x0 + x1) / 2 < 24 if author == "style0" else (x0 + x1) / 2 > 24
    assert isinstance(answer["mixed"], list)
    for part in answer["mixed"]:
        assert set(part) == {"author", "share", "box", "where"}
    overlay = maps / "pair.style.png"
    assert style_map["overlay"] == str(overlay)
    with Image.open(overlay) as picture:
        assert picture.format == "PNG" and picture.width >= 256  # enlarged to be read, legend below
    text = run_cli("inference.similar", str(collage), "--bundle", str(two_style_bundle), "--explain",
                   str(maps), check_exit=0).stdout
    assert (mixed_summary(answer["mixed"]) or "one style") in text
    assert sorted(p.name for p in maps.iterdir()) == ["pair.style.png"]  # rewritten whole, no leftovers


def test_the_report_shows_each_query_s_map_and_says_the_same(two_style_bundle, tmp_path):
    tiny_bundle = two_style_bundle
    collage = _collage(two_style_bundle, tmp_path)
    single = tmp_path / "single.png"
    two_styles(0, 103).save(single)
    out = tmp_path / "report"
    run_cli("inference.report", str(collage), str(single), "--bundle", str(tiny_bundle), "--out", str(out),
            "--quiet", check_exit=0)
    assert sorted(p.name for p in (out / "maps").iterdir()) == ["00000.png", "00001.png"]
    page = (out / "index.html").read_text()
    answers = json.loads(run_cli("inference.similar", str(collage), str(single), "--bundle", str(tiny_bundle),
                                 "--explain", str(tmp_path / "m"), "--json", check_exit=0).stdout)["results"]
    for n, answer in enumerate(answers):
        assert f'<img src="maps/{n:05d}.png" alt="style map"><figcaption>' in page
        assert f"{mixed_summary(answer['mixed']) or 'one style'}</figcaption>" in page
    run_cli("inference.report", str(single), "--bundle", str(tiny_bundle), "--out", str(out), "--quiet",
            "--no-style-map", check_exit=0)
    assert not list((out / "maps").iterdir()) and "style map" not in (out / "index.html").read_text()


def test_explain_bad_input_is_one_line(tiny_run, tiny_bundle, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = tiny_run[0] / "a0t2_0.png"
    result = run_cli("inference.similar", str(broken), str(good), "--bundle", str(tiny_bundle), "--explain",
                     str(tmp_path / "maps"), check_exit=2)
    assert result.stderr.count("\n") == 1 and str(broken) in result.stderr
    assert [p.name for p in (tmp_path / "maps").iterdir()] == ["a0t2_0.style.png"]  # the good one still
    blocked = tmp_path / "file"
    blocked.write_text("x")
    result = run_cli("inference.similar", str(good), "--bundle", str(tiny_bundle), "--explain", str(blocked),
                     check_exit=2)
    assert result.stderr.startswith(f"error: {blocked}: cannot write style maps there") and \
        result.stderr.count("\n") == 1
    result = run_cli("inference.similar", str(good), "--bundle", str(tiny_bundle), "--explain",
                     str(tmp_path / "m"), "--store", str(tmp_path / "s"), check_exit=2)
    assert result.stderr == "error: --explain maps the images themselves: leave out --store\n"
