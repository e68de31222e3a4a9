"""Splits keep groups together, are deterministic, and the leakage check catches near-duplicates."""

import json
import logging
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from datasets.catalog import Catalog
from datasets.config import SplitConfig
from datasets.imports import ingest, read_source
from datasets.splits import LeakageError, assign_splits, split_catalog
from tests.imagegen import make_tree, style_image


@pytest.fixture
def catalog_path(tmp_path):
    make_tree(tmp_path / "src", authors=4, titles=5, per_title=12)
    records, _ = read_source(tmp_path / "src")
    path = tmp_path / "c.sqlite"
    with Catalog(path, create=True) as catalog:
        ingest(catalog, records, progress=False)
    return path


def splits_of(catalog_path, key):
    with Catalog(catalog_path) as catalog:
        rows = catalog.images()
    groups = defaultdict(set)
    for r in rows:
        groups[key(r)].add(r.split)
    return rows, groups


def test_by_title_keeps_titles_whole_and_every_author_in_train(catalog_path):
    with Catalog(catalog_path) as catalog:
        report = split_catalog(catalog, SplitConfig(by="title", min_images=1))
    rows, groups = splits_of(catalog_path, lambda r: r.title)
    assert all(len(s) == 1 for s in groups.values())
    assert all(report.images[s] > 0 for s in ("train", "val", "test"))
    train_authors = {r.author for r in rows if r.split == "train"}
    assert train_authors == {r.author for r in rows}
    assert report.unseen_in_train == []


def test_split_is_deterministic_for_a_seed(catalog_path):
    with Catalog(catalog_path) as catalog:
        rows = catalog.images()
    first = assign_splits(rows, SplitConfig(seed=3, min_images=1))
    again = assign_splits(rows, SplitConfig(seed=3, min_images=1))
    others = [assign_splits(rows, SplitConfig(seed=s, min_images=1)) for s in range(4, 9)]
    assert first == again
    assert any(o != first for o in others)


def test_sizes_follow_the_fractions(catalog_path):
    with Catalog(catalog_path) as catalog:
        rows = catalog.images()
    counts = defaultdict(int)
    for split in assign_splits(rows, SplitConfig(by="image", fractions=(0.6, 0.2, 0.2),
                                                 min_images=1)).values():
        counts[split] += 1
    assert counts == {"train": 144, "val": 48, "test": 48}


def test_episode_blocks_are_contiguous_runs(catalog_path):
    with Catalog(catalog_path) as catalog:
        split_catalog(catalog, SplitConfig(by="episode-block", block_size=4, min_images=1))
    rows, _ = splits_of(catalog_path, lambda r: r.title)
    by_title = defaultdict(list)
    for r in rows:
        by_title[r.title].append((r.position, r.split))
    for episodes in by_title.values():
        episodes.sort()
        for start in range(0, len(episodes), 4):
            assert len({s for _, s in episodes[start:start + 4]}) == 1
    assert {r.split for r in rows} == {"train", "val", "test"}


def test_by_image_warns_that_it_leaks(catalog_path, caplog):
    with caplog.at_level(logging.WARNING), Catalog(catalog_path) as catalog:
        split_catalog(catalog, SplitConfig(by="image", min_images=1))
    assert "leaks" in caplog.text


def test_small_titles_are_left_out(tmp_path):
    src = tmp_path / "src"
    make_tree(src, authors=2, titles=2, per_title=6)
    tiny = src / "author0" / "tiny"
    tiny.mkdir()
    for i in range(3):
        style_image(7, 500 + i).save(tiny / f"{i}.png")
    records, _ = read_source(src)
    with Catalog(tmp_path / "c.sqlite", create=True) as catalog:
        ingest(catalog, records, progress=False)
        report = split_catalog(catalog, SplitConfig(min_images=5, fractions=(0.5, 0.25, 0.25)))
        rows = catalog.images()
    assert report.excluded_titles == {"tiny": 3}
    assert {r.split for r in rows if r.title == "tiny"} == {None}
    assert all(r.split for r in rows if r.title != "tiny")


def test_leakage_check_and_strict_mode(tmp_path, cli):
    src = tmp_path / "src"
    make_tree(src, authors=2, titles=3, per_title=6, size=64)
    original = style_image(0, 1, 64)
    twin = Image.fromarray(np.clip(np.asarray(original).astype(int) + 5, 0, 255).astype(np.uint8))
    for a in range(2):
        for t in range(3):
            twin.save(src / f"author{a}" / f"title{a}_{t}" / "shared.png")
            twin = Image.fromarray(np.clip(np.asarray(twin).astype(int) + 1, 0, 255).astype(np.uint8))
    catalog = str(tmp_path / "c.sqlite")
    cli("datasets", "import", str(src), "--catalog", catalog, "--quiet", check_exit=0)
    cli("datasets", "split", "--catalog", catalog, "--min-images", "1", "--seed", "1", "--fractions",
        "0.5,0.25,0.25", check_exit=0)
    with Catalog(catalog) as c:
        before = {r.id: r.split for r in c.images()}
    result = cli("datasets", "split", "--catalog", catalog, "--min-images", "1", "--seed", "2",
                 "--fractions", "0.5,0.25,0.25", "--strict")
    assert result.returncode == 1
    assert "near-duplicate pairs across splits" in result.stdout and "shared.png" in result.stdout
    assert result.stderr.strip().endswith("split not stored (--strict)")
    with Catalog(catalog) as c:
        assert {r.id: r.split for r in c.images()} == before
    with Catalog(catalog) as c, pytest.raises(LeakageError):
        split_catalog(c, SplitConfig(min_images=1, seed=2, strict=True, fractions=(0.5, 0.25, 0.25)))


def test_bad_fractions_fail_with_one_line(catalog_path, cli):
    result = cli("datasets", "split", "--catalog", str(catalog_path), "--fractions", "0.9,0.2,0.1")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: fractions must add up to 1, got 1.2"


def test_stats_chart_and_json(catalog_path, tmp_path, cli):
    chart = tmp_path / "chart.png"
    result = cli("datasets", "stats", "--catalog", str(catalog_path), "--chart", str(chart), "--json",
                 check_exit=0)
    stats = json.loads(result.stdout)
    assert stats["images"] == 240 and len(stats["titles"]) == 20
    assert stats["authors"] == {f"author{a}": 60 for a in range(4)}
    assert stats["author_imbalance"] == 1.0
    assert Image.open(chart).format == "PNG"
    text = cli("datasets", "stats", "--catalog", str(catalog_path), "--chart", str(chart), check_exit=0)
    assert "240 images, 20 titles, 4 authors" in text.stdout


def test_export_round_trips_through_import(catalog_path, tmp_path, cli):
    cli("datasets", "split", "--catalog", str(catalog_path), "--min-images", "1", check_exit=0)
    out = tmp_path / "exports" / "test.csv"
    result = cli("datasets", "export", "--catalog", str(catalog_path), "--split", "test",
                 "--out", str(out), check_exit=0)
    with Catalog(catalog_path) as catalog:
        expected = {(r.path, r.title, r.author) for r in catalog.images(split="test")}
    assert f"wrote {len(expected)} rows" in result.stdout
    records, skipped = read_source(out)
    assert skipped == [] and {(r.path.resolve(), r.title, r.author) for r in records} == expected


def test_export_of_an_empty_split_fails(catalog_path, tmp_path, cli):
    result = cli("datasets", "export", "--catalog", str(catalog_path), "--split", "test",
                 "--out", str(tmp_path / "t.csv"))
    assert result.returncode == 2 and "split 'test' is empty" in result.stderr
    assert not (tmp_path / "t.csv").exists()


def test_hash_collisions_are_not_reported_as_leaks(tmp_path):
    from PIL import ImageDraw

    from datasets.catalog import ImageRow
    from datasets.image_hash import difference_hash
    from datasets.splits import find_leaks

    def disc(colour, name):
        im = Image.new("RGB", (64, 64), "white")
        ImageDraw.Draw(im).ellipse((8, 8, 56, 56), fill=colour)
        im.save(tmp_path / name)
        return ImageRow(len(name), tmp_path / name, name, "a", (), difference_hash(im), 0, None, "ok")

    red, blue = disc((200, 0, 0), "r.png"), disc((0, 0, 200), "bb.png")
    red_again = disc((201, 0, 0), "ccc.png")
    assert bin((red.dhash ^ blue.dhash) & (2**64 - 1)).count("1") <= 4  # same shape, close hashes
    assignment = {red.id: "train", blue.id: "test", red_again.id: "val"}
    leaks = find_leaks([red, blue, red_again], assignment, max_distance=4, pixel_tolerance=8)
    assert [(p.splits, p.paths) for p in leaks] == [
        (("train", "val"), (str(red.path), str(red_again.path)))]


def _split_cli(cli, catalog_path, *args, check_exit):
    return cli("datasets", "split", "--catalog", str(catalog_path), *args, check_exit=check_exit)


def test_a_split_that_would_leave_test_empty_fails_and_stores_nothing(tmp_path, cli):
    make_tree(tmp_path / "src", authors=2, titles=3, per_title=4)  # 6 titles
    path = tmp_path / "c.sqlite"
    cli("datasets", "import", str(tmp_path / "src"), "--catalog", str(path), "--quiet", check_exit=0)
    result = _split_cli(cli, path, "--by", "title", "--fractions", "0.8,0.1,0.1", "--min-images", "1",
                        check_exit=2)
    err = result.stderr.strip()
    assert err.splitlines() == [err] and "would leave test empty" in err and str(path) in err
    with Catalog(path) as catalog:
        assert {r.split for r in catalog.images()} == {None}


def test_min_images_that_removes_every_title_fails_naming_the_option(catalog_path, cli):
    result = _split_cli(cli, catalog_path, "--min-images", "500", check_exit=2)
    assert "--min-images 500 leaves no title" in result.stderr and "largest has 12 images" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
