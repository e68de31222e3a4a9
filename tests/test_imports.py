"""Imports into the catalog: idempotent, filtered, resumable after a kill, loud about bad input."""

import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from PIL import Image

from datasets.catalog import Catalog, CatalogError
from datasets.config import ImportConfig
from datasets.imports import SourceError, ingest, read_source
from tests.conftest import REPO
from tests.imagegen import make_manifest, make_tree, png_bomb, style_image


def dump(path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def import_into(catalog_path, source, **config):
    records, skipped = read_source(source)
    with Catalog(catalog_path, create=True) as catalog:
        return ingest(catalog, records, ImportConfig(**config), progress=False), skipped


def test_folder_tree_import_and_reimport_adds_nothing(tmp_path):
    make_tree(tmp_path / "src", authors=2, titles=2, per_title=4)
    report, skipped = import_into(tmp_path / "c.sqlite", tmp_path / "src")
    assert (report.added, skipped) == (16, [])
    with Catalog(tmp_path / "c.sqlite") as catalog:
        assert (catalog.count("authors"), catalog.count("titles"), catalog.count("images")) == (2, 4, 16)
        rows = catalog.images()
    assert {r.author for r in rows} == {"author0", "author1"}
    assert [r.position for r in rows if r.title == "title0_0"] == [0, 1, 2, 3]
    before = dump(tmp_path / "c.sqlite")
    again, _ = import_into(tmp_path / "c.sqlite", tmp_path / "src")
    assert (again.added, again.already_present) == (0, 16)
    assert dump(tmp_path / "c.sqlite") == before


def test_episode_files_sort_naturally(tmp_path):
    folder = tmp_path / "src" / "a" / "t"
    folder.mkdir(parents=True)
    for i in (10, 2, 1):
        style_image(0, i).save(folder / f"ep{i}.png")
    records, _ = read_source(tmp_path / "src")
    assert [r.path.name for r in records] == ["ep1.png", "ep2.png", "ep10.png"]


def test_manifest_with_genres_empty_author_and_image_root(tmp_path):
    images = tmp_path / "pics"
    images.mkdir()
    for i in range(4):
        style_image(i, i).save(images / f"{i}.png")
    rows = [
        {"image": "0.png", "title": "Solo", "author": "Kim", "genres": "action|drama"},
        {"image": "1.png", "title": "Solo", "author": "Kim", "genres": ""},
        {"image": "2.png", "title": "Poster", "author": "", "genres": "comedy"},
        {"image": "3.png", "title": "Poster", "author": "", "genres": " comedy | romance "},
    ]
    manifest = make_manifest(tmp_path, rows)
    records, skipped = read_source(manifest, image_root=images)
    assert skipped == []
    with Catalog(tmp_path / "c.sqlite", create=True) as catalog:
        ingest(catalog, records, progress=False)
        got = {r.path.name: (r.title, r.author, r.genres) for r in catalog.images()}
    assert got == {
        "0.png": ("Solo", "Kim", ("action", "drama")),
        "1.png": ("Solo", "Kim", ()),
        "2.png": ("Poster", None, ("comedy",)),
        "3.png": ("Poster", None, ("comedy", "romance")),
    }


def test_manifest_paths_default_to_its_folder(tmp_path):
    style_image(0, 0).save(tmp_path / "x.png")
    manifest = make_manifest(tmp_path, [{"image": "x.png", "title": "T", "author": "A", "genres": ""}])
    records, _ = read_source(manifest)
    assert records[0].path == tmp_path / "x.png"


def test_manifest_without_required_columns_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("path,name\nx.png,T\n")
    with pytest.raises(SourceError, match=r"bad\.csv: missing column\(s\) image, title"):
        read_source(bad)


def test_filters_flat_duplicates_and_placeholders(tmp_path):
    src = tmp_path / "src"
    make_tree(src, authors=3, titles=1, per_title=3)
    Image.new("RGB", (32, 32), (9, 9, 9)).save(src / "author0" / "title0_0" / "flat.png")
    shutil.copy(src / "author1" / "title1_0" / "ep0.png", src / "author1" / "title1_0" / "copy.png")
    placeholder = style_image(99, 99)
    for a in range(3):
        placeholder.save(src / f"author{a}" / f"title{a}_0" / "zz-noimage.png")
    report, _ = import_into(tmp_path / "c.sqlite", src)
    assert (report.added, report.flat, report.duplicates, report.placeholders) == (12, 1, 1, 3)
    with Catalog(tmp_path / "c.sqlite") as catalog:
        usable = catalog.images()
        everything = catalog.images(usable_only=False)
    assert len(usable) == 9 and len(everything) == 12
    assert not any(r.path.name == "zz-noimage.png" for r in usable)


def test_bad_files_are_skipped_counted_and_listed(tmp_path, cli):
    src = tmp_path / "src"
    make_tree(src, authors=1, titles=1, per_title=2)
    title = src / "author0" / "title0_0"
    (title / "empty.png").touch()
    (title / "text.jpg").write_text("hello")
    png_bomb(title / "bomb.png")
    (title / "readme.txt").write_text("not an image")
    good = (title / "ep0.png").read_bytes()
    (title / "cut.png").write_bytes(good[: len(good) // 2])
    result = cli("datasets", "import", str(src), "--catalog", str(tmp_path / "c.sqlite"), "--quiet",
                 check_exit=0)
    assert "added 2," in result.stdout and "rejected 5" in result.stdout
    listed = result.stdout.split("skipped 5 entries:")[1]
    for name, problem in [("empty.png", "empty file"), ("text.jpg", "not an image"),
                          ("bomb.png", "decompression bomb"), ("cut.png", "truncated"),
                          ("readme.txt", "not a png")]:
        assert any(name in line and problem in line for line in listed.splitlines()), name


def test_killed_import_resumes_to_the_same_catalog(tmp_path):
    src = tmp_path / "src"
    total = len(make_tree(src, authors=4, titles=4, per_title=50, size=48))
    command = [sys.executable, "-m", "datasets", "import", str(src), "--batch-size", "10", "--quiet"]
    victim = subprocess.Popen([*command, "--catalog", str(tmp_path / "killed.sqlite")], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.monotonic() + 60
    while committed < 20 and time.monotonic() < deadline and victim.poll() is None:
        committed = _image_count(tmp_path / "killed.sqlite")
        time.sleep(0.002)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 0 < _image_count(tmp_path / "killed.sqlite") < total, "import finished before the kill"
    subprocess.run([*command, "--catalog", str(tmp_path / "killed.sqlite")], cwd=REPO, check=True,
                   capture_output=True)
    subprocess.run([*command, "--catalog", str(tmp_path / "whole.sqlite")], cwd=REPO, check=True,
                   capture_output=True)
    assert dump(tmp_path / "killed.sqlite") == dump(tmp_path / "whole.sqlite")
    assert _image_count(tmp_path / "whole.sqlite") == total


def _image_count(path) -> int:
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_missing_source_fails_without_creating_a_catalog(tmp_path, cli):
    catalog = tmp_path / "c.sqlite"
    result = cli("datasets", "import", str(tmp_path / "nowhere"), "--catalog", str(catalog))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such file or directory"
    assert not catalog.exists()


def test_a_file_that_is_not_a_catalog_is_left_alone(tmp_path, cli):
    make_tree(tmp_path / "src", authors=1, titles=1, per_title=1)
    impostor = tmp_path / "notes.sqlite"
    impostor.write_text("my precious notes")
    result = cli("datasets", "import", str(tmp_path / "src"), "--catalog", str(impostor))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(impostor) in result.stderr
    assert impostor.read_text() == "my precious notes"


def test_stats_on_missing_catalog(tmp_path, cli):
    result = cli("datasets", "stats", "--catalog", str(tmp_path / "none.sqlite"))
    assert result.returncode == 2
    assert "none.sqlite: no such catalog" in result.stderr


def test_title_cannot_change_author(tmp_path):
    with Catalog(tmp_path / "c.sqlite", create=True) as catalog:
        catalog.title_id("local", "T", "T", "A")
        with pytest.raises(CatalogError, match="already belongs to author 'A'"):
            catalog.title_id("local", "T", "T", "B")


def test_newer_schema_is_refused(tmp_path):
    Catalog(tmp_path / "c.sqlite", create=True).close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(CatalogError, match="schema version 99"):
        Catalog(tmp_path / "c.sqlite")


def test_version_1_catalog_is_upgraded_in_place(tmp_path):
    with Catalog(tmp_path / "c.sqlite", create=True) as catalog:
        catalog.title_id("local", "T", "T", "A")
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("DROP TABLE title_info")
    db.execute("DROP INDEX images_source_url")
    db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with Catalog(tmp_path / "c.sqlite") as catalog:
        assert catalog.count("titles") == 1
        title_id = catalog.title_id("local", "T", "T", "A")
        catalog.set_title_info(title_id, {"type": "TV"})
        assert catalog.title_info("local", "T") == {"type": "TV"}
        version = catalog.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == "3"


def test_a_catalog_held_by_another_writer_is_one_line_and_nothing_is_written(tmp_path, cli):
    src = tmp_path / "src"
    make_tree(src, authors=2, titles=1, per_title=2)
    catalog = tmp_path / "c.sqlite"
    cli("datasets", "import", str(src / "author0"), "--catalog", str(catalog), "--quiet", check_exit=0)
    before = dump(catalog)
    holder = sqlite3.connect(catalog, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        result = cli("datasets", "import", str(src), "--catalog", str(catalog), "--quiet", "--wait", "0.2",
                     check_exit=2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = result.stderr.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert err.startswith(f"error: {catalog}: another process is writing to this catalog")
    assert dump(catalog) == before


def test_manifest_rows_outside_the_image_root_are_refused_unless_allowed(tmp_path, cli):
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    style_image(0, 0).save(root / "in.png")
    style_image(1, 1).save(outside / "out.png")
    rows = [{"image": "in.png", "title": "T", "author": "A", "genres": ""},
            {"image": "../elsewhere/out.png", "title": "T", "author": "A", "genres": ""},
            {"image": str(outside / "out.png"), "title": "U", "author": "A", "genres": ""},
            {"image": "sub/../in.png", "title": "V", "author": "A", "genres": ""}]
    manifest = make_manifest(tmp_path, rows)
    result = cli("datasets", "import", str(manifest), "--image-root", str(root), "--catalog",
                 str(tmp_path / "c.sqlite"), "--quiet", check_exit=0)
    assert "added 2," in result.stdout and "rejected 2" in result.stdout
    refused = [line for line in result.stdout.splitlines() if "outside the image root" in line]
    assert len(refused) == 2 and f"{manifest}:3" in refused[0] and f"{manifest}:4" in refused[1]
    with Catalog(tmp_path / "c.sqlite") as catalog:
        assert {r.path.name for r in catalog.images()} == {"in.png"}
    records, skipped = read_source(manifest, root, allow_outside_root=True)
    assert len(records) == 4 and skipped == []
