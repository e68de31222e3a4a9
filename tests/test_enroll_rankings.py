"""benchmarks/enroll_rankings.py replays the enroll benchmark's ranking with numpy: at today's
settings its figures must be those of the library's own scoring (TitleExemplars, exemplar_ranking)
on the same outputs, or its comparisons of other settings mean nothing. Bad input to it, and a
training setting the enroll benchmark passes on and training rejects, are one line each."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from inference.query import exemplar_ranking
from inference.search import unit_rows
from inference.title_exemplars import TitleExemplars
from tests.conftest import REPO

SPLIT_SCRIPT = REPO.parent / "shared" / "data" / "split_by_name.py"


def _load_benchmark():
    path = REPO / "benchmarks" / "enroll_rankings.py"
    spec = importlib.util.spec_from_file_location("enroll_rankings", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _library_hit1(outputs, titles, exemplars_mask, queries_mask, basis_rows) -> float:
    """Title hit@1 through the library: exemplars fitted on `basis_rows`, the rest enrolled."""
    exemplars = TitleExemplars.fit("descriptor", outputs["descriptor"][basis_rows], titles[basis_rows])
    extra = exemplars_mask & ~basis_rows
    if extra.any():
        exemplars = exemplars.extended(exemplars.project(outputs["descriptor"][extra]), titles[extra])
    n_titles = titles.max() + 1
    embedding = unit_rows(outputs["embedding"])
    means = np.zeros((n_titles, embedding.shape[1]), np.float32)
    np.add.at(means, titles[exemplars_mask], embedding[exemplars_mask])
    scores = exemplars.scores(exemplars.project(outputs["descriptor"][queries_mask]), n_titles)
    ranked = exemplar_ranking(scores, embedding[queries_mask] @ unit_rows(means).T)
    return float((ranked.argmax(axis=1) == titles[queries_mask]).mean())


def test_replay_at_todays_settings_gives_the_librarys_figures():
    rng = np.random.default_rng(0)
    n_titles, per_title = 12, 30
    centres = rng.normal(size=(n_titles, 256))
    titles = np.repeat(np.arange(n_titles), per_title)
    descriptor = (centres[titles] + 6.0 * rng.normal(size=(len(titles), 256))).astype(np.float32)
    embedding = (descriptor[:, :32] + rng.normal(size=(len(titles), 32))).astype(np.float32)
    outputs = {"descriptor": descriptor, "embedding": embedding}
    names = np.array([f"t{t:02d}" for t in titles])  # sorted like the title rows
    is_train = np.tile(np.arange(per_title) < 20, n_titles)
    held = titles >= 9
    benchmark = _load_benchmark()
    got = benchmark.replay(outputs, names, is_train, held, benchmark.DEFAULT)
    trained_exemplars, all_exemplars = is_train & ~held, is_train
    assert got["enrolled_hit1"] == round(
        _library_hit1(outputs, titles, all_exemplars, ~is_train & held, trained_exemplars), 4)
    assert got["trained_hit1_after"] == round(
        _library_hit1(outputs, titles, all_exemplars, ~is_train & ~held, trained_exemplars), 4)
    assert 0.2 < got["enrolled_hit1"] < 1.0  # neither trivial nor saturated: the comparison means something


def _run(script: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_replay_bad_input_is_one_line_naming_the_file(tmp_path):
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    assert "no train.csv" in _one_error_line(_run("enroll_rankings.py", data, work))
    for split in ("train", "test"):
        (data / f"{split}.csv").write_text("image,title,author,genres\na.png,t,a,\n")
    line = _one_error_line(_run("enroll_rankings.py", data, work))
    assert str(work) in line and "train_without_held_out.csv" in line
    (work / "runs" / "base" / "bundle").mkdir(parents=True)
    (work / "runs" / "base" / "bundle" / "model.keras").write_bytes(b"")
    (work / "train_without_held_out.csv").write_text("image,title,author,genres\n")
    (work / "layer_outputs.npz").write_bytes(b"not a zip")  # a damaged cache is named, not trusted
    line = _one_error_line(_run("enroll_rankings.py", data, work))
    assert str(work / "layer_outputs.npz") in line and "unreadable" in line


@pytest.mark.skipif(not SPLIT_SCRIPT.is_file(), reason="needs ../shared/data/split_by_name.py")
def test_enroll_benchmark_reports_a_bad_training_setting_in_one_line(tmp_path):
    """`--set` goes to the training run; what training rejects comes back as its own reason."""
    from tests.imagegen import style_image

    rows = []
    for title, author in enumerate([0, 0, 1, 1, 2, 3, 4]):
        for i in range(4):
            name = f"t{title}__icon{i}.png"
            style_image(author, title * 10 + i, 32).save(tmp_path / name)
            rows.append(f"{name},t{title},a{author},\n")
    (tmp_path / "manifest.csv").write_text("image,title,author,genres\n" + "".join(rows))
    result = _run("enroll.py", tmp_path, "--work", tmp_path / "work", "--held-out", "3",
                  "--single-title-authors", "1", "--set", "train.nonsense=1")
    assert "training failed: error: unknown config key train.nonsense" in _one_error_line(result)


def test_both_sides_of_the_relu_score_the_mean_of_the_two_cosines():
    benchmark = _load_benchmark()
    hidden = np.random.default_rng(1).normal(size=(4, 16))
    rows = benchmark.layer_rows({"head_hidden": hidden}, benchmark.BOTH_SIDES)
    pre, post = unit_rows(hidden), unit_rows(np.maximum(hidden, 0))
    np.testing.assert_allclose(rows @ rows.T, (pre @ pre.T + post @ post.T) / 2, atol=1e-12)
    with pytest.raises(SystemExit, match="head_hidden is linear"):
        benchmark.layer_rows({"head_hidden": np.abs(hidden)}, benchmark.BOTH_SIDES)


def test_the_enroll_benchmark_counts_trained_images_taken_by_enrolled_forks(monkeypatch):
    """Only images right before and named an enrolled title after count; of those, the ones
    named a look-alike the enroll reported for their own title."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))  # as when it runs: its siblings importable
    path = REPO / "benchmarks" / "enroll.py"
    spec = importlib.util.spec_from_file_location("enroll_benchmark", path)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    rows = [{"title": t, "author": "a"} for t in ("gnome", "gnome", "gnome", "tango", "tango")]
    before = [(["gnome"], "a"), (["gnome"], "a"), (["tango"], "a"), (["tango"], "a"), (["tango"], "b")]
    after = [(["mate"], "a"), (["gnome"], "a"), (["mate"], "a"), (["elementary"], "a"), (["tango"], "a")]
    taken = benchmark.taken_by_enrolled(rows, before, after, ["mate", "elementary"],
                                        {frozenset(("gnome", "mate"))})
    assert taken == {"images": 2, "to_a_named_look_alike": 1}
    assert benchmark.figures(rows, after) == {"images": 5, "title_hit1": 0.4, "title_hit10": 0.4,
                                              "author_top1": 1.0}
