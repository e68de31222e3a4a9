"""Titles' texts (synopses) come in with the images: a `synopsis.txt` per title folder, a `text`
column in manifests, the collectors' synopses; placeholders count as none; bad text is one line
and the title's images still come in; `datasets export` writes the text back out."""

import csv

from datasets.catalog import Catalog
from datasets.config import ImportConfig
from datasets.imports import ingest, read_source
from datasets.stats import export_split
from datasets.texts import MAX_TEXT_BYTES, clean_text, usable_text
from tests.imagegen import style_image

KOREAN = "평범한 고등학생이 이세계로 떨어져 모험을 시작하는 판타지 액션 로맨스."


def _title(root, author: str, title: str, images: int = 2, seed: int = 0):
    folder = root / author / title
    folder.mkdir(parents=True)
    for i in range(images):
        style_image(seed, i).save(folder / f"ep{i}.png")
    return folder


def _import(catalog, source, image_root=None):
    records, skipped = read_source(source, image_root)
    with Catalog(catalog, create=True) as opened:
        report = ingest(opened, records, ImportConfig(), progress=False)
        return report, skipped, opened.title_texts()


def test_a_synopsis_file_per_title_folder_is_the_titles_text(tmp_path):
    (_title(tmp_path / "src", "kim", "blue sky") / "synopsis.txt").write_text(f"  {KOREAN}\n\n", "utf-8")
    (_title(tmp_path / "src", "lee", "dawn", seed=1) / "synopsis.txt").write_text(
        "A girl finds a\\ndragon.".replace("\\n", "\n"), "utf-8")
    _title(tmp_path / "src", "lee", "no text", seed=2)
    report, skipped, texts = _import(tmp_path / "c.sqlite", tmp_path / "src")
    assert skipped == [] and report.added == 6 and report.texts == 2  # synopsis.txt is not an image
    assert texts == {"blue sky": KOREAN, "dawn": "A girl finds a dragon."}


def test_bad_synopsis_files_are_one_line_each_and_their_titles_images_still_come_in(tmp_path):
    cases = {"binary": b"abc\x00\x01\x02", "big": b"x" * (MAX_TEXT_BYTES + 1),
             "latin1": "Une fée à l'école".encode("latin-1")}
    for i, (name, data) in enumerate(cases.items()):
        (_title(tmp_path / "src", "a", name, seed=i) / "synopsis.txt").write_bytes(data)
    report, skipped, texts = _import(tmp_path / "c.sqlite", tmp_path / "src")
    assert report.added == 6 and texts == {}
    folder = tmp_path / "src" / "a"
    assert skipped == [
        f"{folder / 'big' / 'synopsis.txt'}: {MAX_TEXT_BYTES + 1:,} bytes, over the 256 KB a synopsis may "
        "have; the title is imported without it",
        f"{folder / 'binary' / 'synopsis.txt'}: binary data, not text; the title is imported without it",
        f"{folder / 'latin1' / 'synopsis.txt'}: not UTF-8 text (byte 5); the title is imported without it",
    ]


def test_a_manifest_text_column_and_the_export_round_trip(tmp_path):
    pictures = tmp_path / "pics"
    pictures.mkdir()
    rows = []
    for i in range(4):
        style_image(i % 2, i).save(pictures / f"{i}.png")
        title = f"t{i % 2}"
        text = {0: KOREAN, 1: "", 2: KOREAN, 3: "No synopsis information has been added yet."}[i]
        rows.append([f"pics/{i}.png", title, f"a{i % 2}", "", text])
    manifest = tmp_path / "m.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["image", "title", "author", "genres", "text"], *rows])
    report, skipped, texts = _import(tmp_path / "c.sqlite", manifest)
    assert skipped == [] and report.added == 4
    assert texts == {"t0": KOREAN}  # t1 has only an empty cell and a placeholder
    with Catalog(tmp_path / "c.sqlite") as catalog:
        catalog.set_splits({r.id: "train" for r in catalog.images()})
        export_split(catalog, "train", tmp_path / "out" / "train.csv")
    with open(tmp_path / "out" / "train.csv", newline="", encoding="utf-8") as f:
        exported = list(csv.DictReader(f))
    assert [r["text"] for r in exported] == [KOREAN, KOREAN, "", ""]
    again, skipped, texts = _import(tmp_path / "again.sqlite", tmp_path / "out" / "train.csv")
    assert again.added == 4 and texts == {"t0": KOREAN}


def test_a_manifest_title_with_two_different_texts_keeps_the_first_and_says_so(tmp_path):
    for i in range(2):
        style_image(0, i).save(tmp_path / f"{i}.png")
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,title,author,genres,text\n0.png,t,a,,first text\n1.png,t,a,,second text\n",
                        "utf-8")
    _, skipped, texts = _import(tmp_path / "c.sqlite", manifest)
    assert texts == {"t": "first text"}
    assert skipped == [f"{manifest}:3: a text different from the title's first one; the first is kept"]


def test_placeholders_and_flags_count_as_no_text():
    assert clean_text("   \n ") is None and clean_text(None) is None
    assert clean_text("No synopsis information has been added to this title.") is None
    assert usable_text({"synopsis": "A real one.", "synopsis_placeholder": "1"}) is None
    assert usable_text({"synopsis": "A  real\none."}) == "A real one."
