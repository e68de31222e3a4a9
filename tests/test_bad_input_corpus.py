"""One bad-input corpus (tests/bad_input_corpus.py) through every entry point: inference.similar,
inference.report, datasets import, the web upload, training.train --manifest and
training.evaluate. A bad file gets one line naming it and its problem, and no traceback; the
others are answered; catalogs and bundles are left as they were."""

import csv
import hashlib
import json
import shutil

import pytest

from tests.bad_input_corpus import image_cases
from tests.conftest import run_cli, train_cli

pytest.importorskip("tensorflow")


def _snapshot(folder) -> dict:
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_traceback(result) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def _lines_about(text: str, case) -> list[str]:
    return [line for line in text.splitlines() if str(case.path) in line and case.problem in line]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    return folder, image_cases(folder / "images")


def _manifest(folder, cases, name: str, title: str = "title0-0", author: str = "author0", extra=()):
    """A manifest of the corpus rows (relative to the corpus folder) plus `extra` rows."""
    path = folder / name
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["image", "title", "author", "genres"])
        writer.writeheader()
        writer.writerows(extra)
        for case in cases:
            writer.writerow({"image": str(case.path.relative_to(folder)), "title": title, "author": author,
                             "genres": "action"})
    return path


def test_inference_similar_answers_each_case_or_gives_one_line(corpus, tiny_bundle):
    _, cases = corpus
    before = _snapshot(tiny_bundle)
    for case in cases:
        result = run_cli("inference.similar", str(case.path), "--bundle", str(tiny_bundle), "--json")
        _no_traceback(result)
        if case.problem is None:
            assert result.returncode == 0, (case.name, result.stderr)
            assert len(json.loads(result.stdout)["results"]) == 1
        else:
            assert result.returncode == 2, case.name
            assert result.stderr.count("\n") == 1, (case.name, result.stderr)
            assert _lines_about(result.stderr, case), (case.name, result.stderr)
    assert _snapshot(tiny_bundle) == before


def test_inference_report_lists_each_bad_file_once(corpus, tiny_bundle, tmp_path):
    _, cases = corpus
    out = tmp_path / "report"
    result = run_cli("inference.report", *(str(c.path) for c in cases), "--bundle", str(tiny_bundle),
                     "--out", str(out), "--top-k", "3")
    _no_traceback(result)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    # A folder is a source the report walks for images (this one is empty), not a bad file.
    bad = [c for c in cases if c.problem and not c.path.is_dir()]
    assert len(errors) == len(bad)
    for case in bad:
        assert len(_lines_about("\n".join(errors), case)) == 1, case.name
    page = (out / "index.html").read_text()
    assert page.count('<section class="query">') == sum(1 for c in cases if c.problem is None)


def test_datasets_import_rejects_each_bad_file_with_one_line(corpus, tmp_path):
    folder, cases = corpus
    manifest = _manifest(folder, cases, "import.csv")
    catalog = tmp_path / "c.sqlite"
    result = run_cli("datasets", "import", str(manifest), "--catalog", str(catalog), "--quiet", check_exit=0)
    _no_traceback(result)
    bad = [c for c in cases if c.problem]
    assert f"rejected {len(bad)}" in result.stdout
    for case in bad:
        assert len(_lines_about(result.stdout, case)) == 1, (case.name, result.stdout)
    from datasets.catalog import Catalog

    with Catalog(catalog) as opened:
        stored = {r.path.name for r in opened.images(usable_only=False)}
    assert not stored & {c.path.name for c in bad}


def test_web_upload_answers_each_case_or_gives_400_with_one_line(corpus, tiny_bundle, tmp_path):
    from tests.test_webapp import Server

    _, cases = corpus
    uploads = [c for c in cases if c.path.is_file() and not c.path.is_symlink()]  # bytes can be uploaded
    server = Server(tmp_path, "--bundle", str(tiny_bundle))
    try:
        for case in uploads:
            # A browser sends a newline in a file name as %0A (HTML's multipart encoding).
            name = case.path.name.replace("\n", "%0A")
            status, answer = server.post_image(case.path.read_bytes(), name)
            if case.problem is None:
                assert status == 200 and answer["errors"] == [], case.name
            else:
                assert status == 400 and case.problem in answer["error"], (case.name, answer)
                assert "\n" not in answer["error"] and answer["error"].startswith(name)
        assert server.get("/healthz")[0] == 200
    finally:
        server.stop()


def test_training_skips_each_bad_file_with_one_line(corpus, tiny_run, tmp_path):
    folder, cases = corpus
    tiny = tiny_run[0]
    with open(tiny_run[1]["train"], newline="") as f:
        good = [{**r, "image": str(tiny / r["image"])} for r in csv.DictReader(f)]
    manifest = _manifest(folder, cases, "train.csv", extra=good)
    result = train_cli("--preset", "tiny", "--manifest", str(manifest), "--image-root", str(folder),
                       "--allow-outside-root", "--out-dir", str(tmp_path / "runs"), "--name", "c",
                       "--epochs", "1")
    _no_traceback(result)
    for case in (c for c in cases if c.problem):
        assert len(_lines_about(result.stderr, case)) == 1, (case.name, result.stderr[-2000:])
    assert (tmp_path / "runs" / "c" / "bundle" / "model.tflite").is_file()


def test_evaluate_skips_each_bad_file_with_one_line(corpus, tiny_run, tiny_bundle):
    folder, cases = corpus
    before = _snapshot(tiny_bundle)
    tiny = tiny_run[0]
    with open(tiny_run[1]["test"], newline="") as f:
        good = [{**r, "image": str(tiny / r["image"])} for r in csv.DictReader(f)]
    manifest = _manifest(folder, cases, "test.csv", extra=good)
    result = run_cli("training.evaluate", "--bundle", str(tiny_bundle), "--manifest", str(manifest),
                     "--allow-outside-root", "--out", str(folder / "eval"), "--json", check_exit=0)
    _no_traceback(result)
    for case in (c for c in cases if c.problem):
        assert len(_lines_about(result.stderr, case)) == 1, (case.name, result.stderr[-2000:])
    assert json.loads(result.stdout)["skipped_images"] == sum(1 for c in cases if c.problem)
    assert _snapshot(tiny_bundle) == before


@pytest.mark.parametrize("case", ["missing columns", "bad encoding", "outside the root"])
@pytest.mark.parametrize("entry", ["import", "train", "evaluate"])
def test_bad_manifests_are_one_line_in_every_entry_point(case, entry, tiny_run, tiny_bundle, tmp_path):
    manifest = tmp_path / "m.csv"
    root = tmp_path / "root"
    root.mkdir()
    shutil.copy(tiny_run[0] / "a0t0_0.png", root / "a.png")
    if case == "missing columns":
        manifest.write_text("path,name\na.png,T\n")
        expected = f"{manifest}: missing column(s) image, title"
    elif case == "bad encoding":
        manifest.write_bytes("image,title,author,genres\na.png,T\u00e9,A,\n".encode("utf-16"))
        expected = f"{manifest}: not a UTF-8 CSV file"
    else:
        absolute = tiny_run[0] / "a1t0_1.png"
        manifest.write_text(f"image,title,author,genres\n../outside.png,T,A,\n{absolute},T,A,\n")
        expected = "outside the image root"
    args = {"import": ["datasets", "import", str(manifest), "--image-root", str(root), "--catalog",
                       str(tmp_path / "c.sqlite"), "--quiet"],
            "train": ["training.train", "--preset", "tiny", "--manifest", str(manifest), "--image-root",
                      str(root), "--out-dir", str(tmp_path / "runs"), "--quiet"],
            "evaluate": ["training.evaluate", "--bundle", str(tiny_bundle), "--manifest", str(manifest),
                         "--image-root", str(root)]}[entry]
    result = run_cli(*args)
    _no_traceback(result)
    text = result.stdout + result.stderr
    assert expected in text, text[-1500:]
    if case == "outside the root":
        assert len([line for line in text.splitlines() if expected in line]) == 2
        if entry == "import":
            assert result.returncode == 0 and "rejected 2" in result.stdout
        else:
            assert result.returncode == 2 and "no usable rows" in result.stderr
    else:
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "c.sqlite").exists()
