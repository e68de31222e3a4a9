"""benchmarks/enroll_rankings.py replays the enroll benchmark's ranking with numpy: at today's
settings its figures must be those of the library's own scoring (TitleExemplars, exemplar_ranking)
on the same outputs, or its comparisons of other settings mean nothing."""

import importlib.util

import numpy as np

from inference.query import exemplar_ranking
from inference.search import unit_rows
from inference.title_exemplars import TitleExemplars
from tests.conftest import REPO


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
