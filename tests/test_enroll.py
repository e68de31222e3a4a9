"""Enrolling titles and authors into a bundle without retraining: added, queried and removed;
an existing author updated, not duplicated; a kill leaves a bundle that answers; a web app
keeps answering, and picks the new titles up, while an enroll runs."""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from datasets.images import load_resized
from inference.bundle import Bundle
from inference.query import StyleFinder, find_similar
from tests.conftest import REPO, run_cli
from tests.imagegen import style_image

pytest.importorskip("tensorflow")


def _bundle_copy(tiny_bundle, folder):
    target = folder / "bundle"
    shutil.copytree(tiny_bundle, target)
    return target


def _tree(root, titles: dict[tuple[str, str], tuple[int, int]], size: int = 24):
    """ROOT/<author>/<title>/ep<i>.png; `titles`: (author, title) -> (style, images)."""
    for (author, title), (style, count) in titles.items():
        folder = root / author / title
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            style_image(style, 7000 + i, size).save(folder / f"ep{i}.png")
    return root


def test_enroll_adds_a_title_and_an_author_that_queries_find_then_removes_them(tiny_bundle, tmp_path):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    before = Bundle.load(bundle_dir)
    source = _tree(tmp_path / "new", {("newcomer", "fresh title"): (4, 12), ("author0", "extra0"): (0, 6)})
    (source / "newcomer" / "fresh title" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run_cli("inference.enroll", "--bundle", str(bundle_dir), str(source), "--quiet", check_exit=0)
    assert result.stdout.startswith("enrolled 18 images: 2 new titles, 0 updated, 1 new authors; rejected 1")
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 1 and "broken.png: not an image" in errors[0]

    after = Bundle.load(bundle_dir)
    assert len(after.titles) == len(before.titles) + 2
    assert after.enrolled_authors == ["newcomer"]  # author0 was known: updated, not duplicated
    assert after.all_authors.count("author0") == 1
    assert after.authors == before.authors
    record = {e.title: e for e in after.enrolled}["fresh title"]
    assert record.author == "newcomer" and record.images == 12 and record.source == str(source.resolve())
    assert "fresh title by newcomer: 12 images" in (bundle_dir / "MODEL_CARD.md").read_text()
    assert after.prototype_temperature > 0  # calibrated at export

    query = source / "newcomer" / "fresh title" / "ep3.png"
    finder = StyleFinder(bundle_dir)
    result = finder.query([query], k=3)[0]
    assert result.titles[0].title == "fresh title"
    outputs = finder.encode(load_resized(query, finder.bundle.image_size)[None])
    probabilities = finder.author_probabilities(finder._catalog, {k: v[0] for k, v in outputs.items()})
    assert probabilities.shape == (4,) and abs(float(probabilities.sum()) - 1.0) < 1e-4
    # The tiny model's space barely tells its own titles apart (its leave-one-out calibration
    # fits a low temperature), so the newcomer is not necessarily first; every surface must
    # still give the same answer.
    cli = json.loads(run_cli("inference.similar", str(query), "--bundle", str(bundle_dir), "--json",
                             check_exit=0).stdout)
    assert cli["results"][0]["titles"][0]["title"] == "fresh title"
    assert [(a["name"], round(a["probability"], 5)) for a in cli["results"][0]["authors"]] == \
        [(a.name, round(a.probability, 5)) for a in result.authors]

    run_cli("inference.enroll", "--bundle", str(bundle_dir), "--remove", "fresh title", check_exit=0)
    removed = Bundle.load(bundle_dir)
    assert "fresh title" not in [t.name for t in removed.titles] and removed.enrolled_authors == []
    assert [e.title for e in removed.enrolled] == ["extra0"]
    assert len(list((bundle_dir / "thumbs").glob("enrolled-*.png"))) == len(removed.titles[-1].thumbnails)
    assert sorted(p.name for p in bundle_dir.glob("title_index*.npz")) == [removed.title_index]


def test_enrolling_a_title_the_bundle_has_updates_it(tiny_bundle, tmp_path):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    before = Bundle.load(bundle_dir)
    trained = before.titles[0]
    source = _tree(tmp_path / "more", {(trained.author, trained.name): (0, 5)})
    result = run_cli("inference.enroll", "--bundle", str(bundle_dir), str(source), "--quiet", check_exit=0)
    assert "0 new titles, 1 updated, 0 new authors" in result.stdout
    after = Bundle.load(bundle_dir)
    assert len(after.titles) == len(before.titles) and after.titles[0].images == trained.images + 5
    assert after.enrolled[0].images == 5 and after.enrolled_authors == []


def test_enrolling_a_copy_of_a_trained_title_names_the_look_alike(tiny_run, tiny_bundle, tmp_path):
    """A title whose images are a trained title's own: the enroll says queries may confuse the two."""
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    manifest = tmp_path / "copy.csv"
    manifest.write_text("image,title,author,genres\n" + "".join(
        f"a0t0_{i}.png,title0-0 again,author0,\n" for i in range(8)))
    result = run_cli("inference.enroll", "--bundle", str(bundle_dir), str(manifest), "--image-root",
                     str(tiny_run[0]), "--quiet", check_exit=0)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("enrolled 8 images: 1 new titles")
    assert any(line.startswith("look-alike: title0-0 again and title0-0: ") for line in lines[1:]), lines


def test_bad_enroll_input_is_one_line(tiny_bundle, tmp_path):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,name\nx.png,T\n")
    for args, message in [([str(manifest)], "missing column(s) image, title"),
                          (["--remove", "no such"], "no title 'no such' to remove"),
                          ([str(tmp_path / "missing")], "no such file or directory")]:
        result = run_cli("inference.enroll", "--bundle", str(bundle_dir), *args, check_exit=2)
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert Bundle.load(bundle_dir).titles == Bundle.load(tiny_bundle).titles


def test_enroll_reads_a_catalog_split(tiny_bundle, tmp_path):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    source = _tree(tmp_path / "src", {("painter", f"canvas{t}"): (3 + t, 12) for t in range(4)})
    catalog = str(tmp_path / "c.sqlite")
    run_cli("datasets", "import", str(source), "--catalog", catalog, "--quiet", check_exit=0)
    empty = run_cli("inference.enroll", "--bundle", str(bundle_dir), "--catalog", catalog, "--split", "test",
                    check_exit=2)  # nothing split yet
    assert empty.stderr.count("\n") == 1 and "split 'test' is empty" in empty.stderr
    run_cli("datasets", "split", "--catalog", catalog, "--by", "title", "--min-images", "5", "--fractions",
            "0.5,0.25,0.25", check_exit=0)
    result = run_cli("inference.enroll", "--bundle", str(bundle_dir), "--catalog", catalog, "--split", "test",
                     "--quiet", check_exit=0)
    after = Bundle.load(bundle_dir)
    enrolled = after.enrolled[0]
    assert result.stdout.startswith(f"enrolled {enrolled.images} images: 1 new titles")
    assert enrolled.author == "painter" and enrolled.source == f"{catalog} split test"
    assert after.enrolled_authors == ["painter"]


def test_enroll_new_takes_each_collected_image_once(tiny_bundle, tmp_path):
    """The weekly step: `--new` enrolls what the catalog gained since the last `--new` (the first
    time, the images no split holds), new titles and new episodes of known ones, never twice."""
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    catalog = str(tmp_path / "c.sqlite")
    first = _tree(tmp_path / "week1", {("painter", "canvas0"): (3, 4), ("painter", "canvas1"): (4, 4)})
    run_cli("datasets", "import", str(first), "--catalog", catalog, "--quiet", check_exit=0)
    run_cli("datasets", "split", "--catalog", catalog, "--by", "title", "--min-images", "1", "--fractions",
            "0.5,0.5,0", check_exit=0)  # both titles now in a split: trained on, not new
    second = _tree(tmp_path / "week2", {("painter", "canvas2"): (5, 3)})
    run_cli("datasets", "import", str(second), "--catalog", catalog, "--quiet", check_exit=0)
    enroll = ["inference.enroll", "--bundle", str(bundle_dir), "--catalog", catalog, "--new", "--quiet"]
    result = run_cli(*enroll, check_exit=0)
    assert result.stdout.startswith("enrolled 3 images: 1 new titles, 0 updated")
    again = run_cli(*enroll, check_exit=0)
    assert again.stdout.startswith("nothing new in") and Bundle.load(bundle_dir).enrolled[0].images == 3
    third = tmp_path / "week3"
    for i in range(2):  # two new episodes of a title the bundle has
        folder = third / "painter" / "canvas2"
        folder.mkdir(parents=True, exist_ok=True)
        style_image(5, 9000 + i, 24).save(folder / f"new{i}.png")
    run_cli("datasets", "import", str(third), "--catalog", catalog, "--quiet", check_exit=0)
    result = run_cli(*enroll, check_exit=0)
    assert result.stdout.startswith("enrolled 2 images: 0 new titles, 1 updated")
    after = Bundle.load(bundle_dir)
    assert [t.images for t in after.titles if t.name == "canvas2"] == [5]
    assert list(after.catalog_marks.values()) == [13]
    bad = run_cli("inference.enroll", "--bundle", str(bundle_dir), "--catalog", catalog, check_exit=2)
    assert "--catalog needs --split (train, val or test) or --new" in bad.stderr


@pytest.mark.parametrize("delay", [0.0, 0.3, 0.8])
def test_a_kill_during_enroll_leaves_a_bundle_that_opens_and_answers(tiny_bundle, tmp_path, delay):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    before = len(Bundle.load(bundle_dir).titles)
    source = _tree(tmp_path / "many", {(f"artist{a}", f"series{a}"): (a, 40) for a in range(6)})
    victim = subprocess.Popen([sys.executable, "-m", "inference.enroll", "--bundle", str(bundle_dir),
                               str(source), "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    bundle = Bundle.load(bundle_dir)
    assert len(bundle.titles) in (before, before + 6)  # the old bundle or the new one, never a mix
    assert len(bundle.title_embeddings) == len(bundle.titles)
    result = find_similar(style_image(1, 5, 24), StyleFinder(bundle_dir), k=3)
    assert len(result.titles) == 3


def test_a_web_app_answers_during_enrolls_and_picks_up_new_titles(tiny_bundle, tmp_path):
    from tests.test_webapp import Server

    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    source = _tree(tmp_path / "new", {("newcomer", "fresh title"): (4, 30)})
    image = source / "newcomer" / "fresh title" / "ep1.png"
    (tmp_path / "tmp").mkdir()
    server = Server(tmp_path / "tmp", "--bundle", str(bundle_dir))
    statuses, stop = [], threading.Event()

    def ask() -> None:
        while not stop.is_set():
            statuses.append(server.post_image(image.read_bytes(), "q.png")[0])

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        titles = json.loads(server.get("/healthz")[1])["titles"]
        for _ in range(2):
            run_cli("inference.enroll", "--bundle", str(bundle_dir), str(source), "--quiet", check_exit=0)
            run_cli("inference.enroll", "--bundle", str(bundle_dir), "--remove", "fresh title", check_exit=0)
        run_cli("inference.enroll", "--bundle", str(bundle_dir), str(source), "--quiet", check_exit=0)
        assert json.loads(server.get("/healthz")[1])["titles"] == titles + 1  # no restart needed
        status, answer = server.post_image(image.read_bytes(), "q.png")
        assert status == 200 and answer["results"][0]["titles"][0]["title"] == "fresh title"
        same = find_similar(image, bundle_dir, k=10)
        assert [t["title"] for t in answer["results"][0]["titles"]] == [t.title for t in same.titles]
    finally:
        stop.set()
        asker.join()
        server.stop()
    assert statuses and set(statuses) == {200}


def test_enrolling_never_imports_tensorflow(tiny_bundle, tmp_path):
    bundle_dir = _bundle_copy(tiny_bundle, tmp_path)
    source = _tree(tmp_path / "new", {("newcomer", "fresh title"): (4, 3)})
    code = ("import sys; from inference.enroll import main; "
            f"code = main(['--bundle', {str(bundle_dir)!r}, {str(source)!r}, '--quiet']); "
            "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stdout + result.stderr
