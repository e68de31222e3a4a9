"""The nearest-title classifier that names enrolled authors: exemplar scores, the
leave-one-out calibration and the combination with the head, on vectors whose answer is known."""

import numpy as np
import pytest

from inference.author_prototypes import calibrate, combine, title_author_matrix, title_probabilities
from inference.bundle import Bundle, BundleError, TitleEntry
from inference.title_exemplars import NEIGHBOURS, TitleExemplars


def _clusters(spreads: list[float], per_title: int = 40, dim: int = 64, seed: int = 0):
    """Exemplars around one random direction per title, `spreads[t]` the noise of title t."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(len(spreads), dim))
    noise = [s * rng.normal(size=(per_title, dim)) for s in spreads]
    vectors = np.concatenate([c + n for c, n in zip(centres, noise, strict=True)])
    titles = np.repeat(np.arange(len(spreads)), per_title)
    return centres, vectors, titles


def test_exemplars_project_onto_leading_directions_and_score_by_nearest_neighbours():
    _, vectors, titles = _clusters([0.3, 0.3, 0.3], dim=200)
    exemplars = TitleExemplars.fit("descriptor", vectors, titles, dim=16)
    assert exemplars.basis.shape == (200, 16) and exemplars.vectors.shape == (120, 16)
    np.testing.assert_allclose(np.linalg.norm(exemplars.vectors, axis=1), 1.0, atol=1e-5)
    scores = exemplars.scores(exemplars.project(vectors[:5]), 3)
    assert (scores.argmax(axis=1) == 0).all()
    # A title's score is the mean of its NEIGHBOURS best cosines; with fewer exemplars, of all.
    angles = np.radians([0, 90, 10, 20, 30, 40])
    vectors = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    titles = np.array([0, 1, 1, 1, 1, 1])  # title 0 has one exemplar, title 2 none
    few = TitleExemplars("embedding", np.zeros(2, np.float32), None, vectors, titles)
    query = np.array([[1.0, 0.0]], np.float32)
    assert NEIGHBOURS == 3
    best = np.cos(np.radians([10, 20, 30])).mean()
    np.testing.assert_allclose(few.scores(query, 3), [[1.0, best, -1.0]], atol=1e-6)


def test_exact_scores_are_the_mean_of_each_titles_nearest_exemplars_with_one_left_out():
    """Many titles of uneven size (one with none, several with fewer than NEIGHBOURS), random
    unit vectors, ties included: each score against the definition, computed title by title."""
    rng = np.random.default_rng(3)
    titles = np.repeat(np.arange(9), [1, 2, 3, 7, 0, 25, 4, 1, 40])
    vectors = rng.normal(size=(len(titles), 6)).astype(np.float32)
    vectors[10] = vectors[11]  # two equal exemplars of one title
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exemplars = TitleExemplars("embedding", np.zeros(6, np.float32), None, vectors, titles)
    queries = np.vstack([vectors[[0, 5, 10, 40]], rng.normal(size=(3, 6))]).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    left_out = np.array([0, 5, -1, 40, -1, 60, 2])
    for exclude in (None, left_out):
        got = exemplars.scores(queries, 9, exclude=exclude)
        for i, query in enumerate(queries):
            for title in range(9):
                rows = [r for r in np.flatnonzero(titles == title) if exclude is None or r != exclude[i]]
                nearest = sorted((float(vectors[r] @ query) for r in rows), reverse=True)[:NEIGHBOURS]
                assert got[i, title] == pytest.approx(np.mean(nearest) if nearest else -1.0, abs=1e-6)


def test_leave_one_out_never_scores_an_exemplar_against_itself():
    exemplars = TitleExemplars(
        "embedding",
        np.zeros(2, np.float32),
        None,
        np.array([[1, 0], [1, 0], [0, 1]], np.float32),
        np.array([0, 0, 1]),
    )
    scores, titles = exemplars.leave_one_out(2)
    assert sorted(titles.tolist()) == [0, 0]  # title 1 has one exemplar: nothing to hold out
    np.testing.assert_allclose(scores, [[1.0, 0.0], [1.0, 0.0]], atol=1e-6)  # its twin, not itself


def test_removing_a_title_renumbers_the_exemplars_of_the_others():
    exemplars = TitleExemplars(
        "embedding",
        np.zeros(2, np.float32),
        None,
        np.eye(2, dtype=np.float32)[[0, 1, 1, 0]],
        np.array([0, 1, 2, 2]),
    )
    kept = exemplars.kept([0, 2])
    assert kept.titles.tolist() == [0, 1, 1] and kept.fits(2) and not kept.fits(1)


def test_with_nothing_enrolled_the_head_answers_alone():
    head = np.array([[0.7, 0.2, 0.1]])
    by_title = title_probabilities(np.array([[0.9, 0.1, 0.3, 0.2]]), 20.0, 0.0, np.zeros(4))
    matrix = title_author_matrix(["a", "a", "b", "c"], ["a", "b", "c"])
    np.testing.assert_allclose(combine(head, by_title, matrix, np.zeros(4)), head, atol=1e-6)


def test_calibration_names_a_new_authors_images_and_leaves_trained_ones_alone():
    # Trained titles are tight (the network pulled them together), enrolled ones looser, and
    # they overlap: without the bias, enrolled images would go to trained titles.
    centres, vectors, titles = _clusters([1.5, 1.5, 1.5, 1.5, 3.0, 3.0], seed=1)
    authors = ["a", "a", "b", "c", "new", "c"]  # title 4 by a new author, title 5 by a known one
    enrolled = np.array([0, 0, 0, 0, 1, 1], np.float32)
    exemplars = TitleExemplars.fit("descriptor", vectors, titles, dim=32)
    temperature, bias = calibrate(exemplars, authors, enrolled)
    assert temperature > 5 and bias > 0  # sharp, and the looser enrolled titles are helped

    matrix = title_author_matrix(authors, ["a", "b", "c", "new"])
    rng = np.random.default_rng(2)
    queries = np.concatenate([centres[t] + s * rng.normal(size=(200, 64)) for t, s in ((4, 3.0), (0, 1.5))])
    scores = exemplars.scores(exemplars.project(queries), 6)
    head = np.tile([[0.6, 0.3, 0.1]], (400, 1))  # a head that has never seen the new author

    def named(bias: float) -> np.ndarray:
        combined = combine(head, title_probabilities(scores, temperature, bias, enrolled), matrix, enrolled)
        np.testing.assert_allclose(combined.sum(axis=1), 1.0, atol=1e-5)
        return combined.argmax(axis=1)

    fitted, unbiased = named(bias), named(0.0)
    assert (fitted[:200] == 3).mean() >= 0.7  # the new author's images (clusters overlap)
    assert (fitted[:200] == 3).mean() > (unbiased[:200] == 3).mean()
    assert (fitted[200:] == 0).mean() >= 0.95  # a trained author's: still its own


def test_calibration_without_enrolled_titles_fits_no_bias():
    _, vectors, titles = _clusters([0.4, 0.4, 0.4])
    exemplars = TitleExemplars.fit("descriptor", vectors, titles, dim=8)
    temperature, bias = calibrate(exemplars, ["a", "b", None], np.zeros(3, np.float32))
    assert temperature > 0 and bias == 0


def test_a_bundle_keeps_its_exemplars_and_refuses_ones_that_do_not_match(tmp_path):
    _, vectors, titles = _clusters([0.4, 0.4], per_title=5, dim=8)
    exemplars = TitleExemplars.fit("descriptor", vectors, titles, dim=4)
    entries = [TitleEntry(f"t{i}", "a", (), (), 5) for i in range(2)]
    bundle = Bundle(
        path=tmp_path,
        name="b",
        version="1",
        image_size=(8, 8),
        label_kind="author",
        authors=["a"],
        genres=[],
        genre_thresholds=[],
        author_prior=[1.0],
        titles=entries,
        title_embeddings=np.eye(2, 4, dtype=np.float32),
        exemplars=exemplars,
    )
    bundle.save()
    loaded = Bundle.load(tmp_path)
    assert loaded.exemplars.output == "descriptor" and loaded.exemplars.titles.tolist() == titles.tolist()
    np.testing.assert_allclose(loaded.exemplars.vectors, exemplars.vectors, atol=1e-3)  # float16 on disk
    bundle.exemplars = TitleExemplars(
        exemplars.output, exemplars.mean, exemplars.basis, exemplars.vectors, titles + 1
    )  # names a third title the bundle does not have
    bundle.save()
    with pytest.raises(BundleError, match="exemplars"):
        Bundle.load(tmp_path)


def test_a_bundle_without_exemplars_keeps_its_calibration_when_enrolling():
    # Exported before exemplars: each trained title's mean is its one exemplar, nothing to hold out.
    _, vectors, titles = _clusters([0.4, 0.4, 0.4], per_title=10, dim=16)
    means = np.stack([vectors[titles == t].mean(axis=0) for t in range(2)])
    exemplars = TitleExemplars.of_means(means).extended(
        TitleExemplars.of_means(means).project(vectors[titles == 2]), np.full(10, 2)
    )
    # Only the enrolled title has queries: nothing to trade the bias against, the bundle's own
    # temperature stays (enrollment keeps it when calibrate says 0).
    assert calibrate(exemplars, ["a", "b", "new"], np.array([0, 0, 1], np.float32)) == (0.0, 0.0)


def test_catalog_scale_scoring_through_the_graph_agrees_with_comparing_every_exemplar(monkeypatch, tmp_path):
    """Past EXACT_EXEMPLARS the nearest exemplars come from an HNSW graph, the titles they belong to
    are scored exactly and the rest get a bound: the same answers, leave-one-out included; the
    graph is saved beside the bundle, reloaded, and extended on an enroll."""
    import inference.title_exemplars as module

    _, vectors, titles = _clusters([0.8] * 60, per_title=30, dim=32, seed=3)
    units = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    exact = TitleExemplars("embedding", np.zeros(32, np.float32), None, units, titles)
    queries = units[::37] + 0.05
    want = exact.scores(queries, 60)
    want_loo = exact.scores(units[::41], 60, exclude=np.arange(0, len(units), 41))
    monkeypatch.setattr(module, "EXACT_EXEMPLARS", 100)
    monkeypatch.setattr(module, "CANDIDATES", 64)
    graphed = TitleExemplars("embedding", np.zeros(32, np.float32), None, units, titles, graph_dir=tmp_path)
    got = graphed.scores(queries, 60)
    assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
    np.testing.assert_allclose(got.max(axis=1), want.max(axis=1), atol=1e-5)
    got_loo = graphed.scores(units[::41], 60, exclude=np.arange(0, len(units), 41))
    assert (got_loo.argmax(axis=1) == want_loo.argmax(axis=1)).all()
    saved = list(tmp_path.glob("exemplars-*.usearch"))
    assert len(saved) == 1
    again = TitleExemplars("embedding", np.zeros(32, np.float32), None, units, titles, graph_dir=tmp_path)
    assert len(again.index()) == len(units)  # loaded, not built
    graph = graphed.index()
    grown = graphed.extended(units[:5], np.full(5, 59))
    assert grown.index() is graph and len(graph) == len(units) + 5  # extended in place, not rebuilt
    grown.save_graph()  # what Bundle.save does before bundle.json names the grown exemplars
    grown.remove_stale_graphs()
    (kept,) = tmp_path.glob("exemplars-*.usearch")
    assert kept.name == f"exemplars-{grown.digest()}.usearch" and kept not in saved
    reloaded = TitleExemplars(
        "embedding", np.zeros(32, np.float32), None, grown.vectors, grown.titles, graph_dir=tmp_path
    )
    written = kept.stat().st_mtime_ns
    assert len(reloaded.index()) == len(units) + 5  # the next process loads it: not built, not saved again
    assert kept.stat().st_mtime_ns == written and list(tmp_path.glob("exemplars-*.usearch")) == [kept]


def test_a_title_holding_every_graph_candidate_does_not_push_the_true_second_down(monkeypatch, tmp_path):
    """One title's exemplars fill all the graph's candidates: the titles nobody retrieved are
    scored on their average cosine, never above their exact score, and the true second (found
    among the titles nearest on average) is scored exactly and stays second."""
    import inference.title_exemplars as module

    rng = np.random.default_rng(5)
    dim, others = 24, 150
    centre = rng.normal(size=dim)
    second = centre + 0.9 * rng.normal(size=dim)
    vectors = np.concatenate(
        [
            centre + 0.15 * rng.normal(size=(300, dim)),
            second + 0.3 * rng.normal(size=(20, dim)),
            rng.normal(size=(others * 20, dim)),
        ]
    )
    titles = np.concatenate([np.zeros(300), np.ones(20), np.repeat(np.arange(2, others + 2), 20)]).astype(int)
    units = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    queries = units[:300:30] + 0.01
    exact = TitleExemplars("embedding", np.zeros(dim, np.float32), None, units, titles).scores(
        queries, others + 2
    )
    monkeypatch.setattr(module, "EXACT_EXEMPLARS", 100)
    monkeypatch.setattr(module, "CANDIDATES", 32)
    monkeypatch.setattr(module, "AVERAGE_CANDIDATES", 8)
    graphed = TitleExemplars("embedding", np.zeros(dim, np.float32), None, units, titles, graph_dir=tmp_path)
    got = graphed.scores(queries, others + 2)
    assert (np.argsort(-exact, axis=1)[:, :2] == [0, 1]).all()
    np.testing.assert_array_equal(np.argsort(-got, axis=1)[:, :2], np.argsort(-exact, axis=1)[:, :2])
    np.testing.assert_allclose(got[:, :2], exact[:, :2], atol=1e-5)
    assert (got <= exact + 1e-5).all()


def _reference_calibration(scores, titles, enrolled, authors):
    """The definition, term by term: every (temperature, bias) of the grid, the author's
    probability as the product of the title softmax and the author matrix."""
    from inference.author_prototypes import BIASES, TEMPERATURES

    weights = 1.0 / np.bincount(titles, minlength=scores.shape[1])[titles]
    truth = authors[titles].argmax(axis=1)
    best, best_loss = None, np.inf
    for temperature in TEMPERATURES:
        for bias in BIASES if enrolled[titles].any() else [0.0]:
            by_author = title_probabilities(scores, temperature, bias, enrolled) @ authors
            loss = -(np.log(by_author[np.arange(len(titles)), truth] + 1e-12) * weights).sum() / weights.sum()
            if loss < best_loss:
                best, best_loss = (float(temperature), float(bias)), loss
    return best


@pytest.mark.parametrize("shift", [-0.2, 0.0, 0.2])
def test_the_fast_calibration_finds_what_the_definition_does(shift):
    from inference.author_prototypes import fit_calibration

    rng = np.random.default_rng(7)
    owner = rng.integers(0, 12, 30)
    authors = np.eye(12, dtype=np.float32)[owner]
    titles = rng.integers(0, 30, 500)
    enrolled = (rng.random(30) < 0.3).astype(np.float32)
    scores = rng.uniform(-0.2, 0.5, (500, 30)).astype(np.float32)
    scores[np.arange(500), titles] += rng.uniform(0, 0.5, 500).astype(np.float32)
    scores += shift * enrolled  # enrolled titles scored lower or higher: a bias either way
    expected = _reference_calibration(scores, titles, enrolled, authors)
    assert fit_calibration(scores, titles, enrolled, authors) == pytest.approx(expected)


def test_past_the_budget_calibration_holds_out_one_image_of_as_many_titles_favouring_enrolled(monkeypatch):
    import inference.title_exemplars as module

    monkeypatch.setattr(module, "CALIBRATION_BUDGET", 20)
    _, vectors, titles = _clusters([0.3] * 50, per_title=3, dim=16)
    exemplars = TitleExemplars(
        "embedding",
        np.zeros(16, np.float32),
        None,
        (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32),
        titles.astype(np.int32),
    )
    favoured = np.zeros(50, bool)
    favoured[[3, 17, 41]] = True
    scores, held = exemplars.leave_one_out(50, favoured=favoured)
    assert scores.shape == (20, 50) and len(set(held.tolist())) == 20  # one image of 20 titles
    assert {3, 17, 41} <= set(held.tolist())  # every enrolled title (fewer than half the budget)


def test_enrolling_into_a_bundle_whose_exemplars_have_a_graph(monkeypatch, tmp_path):
    """A catalog-scale bundle (exemplars past EXACT_EXEMPLARS, so queries go through the HNSW
    graph): an enroll extends the graph the query loaded and saves the bundle with it (this once
    failed: saving deep-copied the graph), and a fresh process's finder loads that graph."""
    import shutil

    import inference.title_exemplars as module
    from inference.enrollment import EnrollImage, enroll
    from inference.query import DEMO_BUNDLE, StyleFinder
    from tests.conftest import REPO

    monkeypatch.setattr(module, "EXACT_EXEMPLARS", 100)
    monkeypatch.setattr(module, "CANDIDATES", 32)
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle_dir)
    images = sorted((REPO / "examples" / "icons").rglob("*.png"))
    finder = StyleFinder(bundle_dir)
    before = finder.query(images[:1])[0]
    (graph,) = bundle_dir.glob("exemplars-*.usearch")  # built by the first query and saved
    count = len(finder.bundle.title_exemplars.vectors)
    new = [EnrollImage(p, "new theme", "new author") for p in images[:4]]
    report = enroll(bundle_dir, new, "test", progress=False, finder=finder)
    assert report.images == 4 and report.added == ["new theme"]
    (grown,) = bundle_dir.glob("exemplars-*.usearch")
    assert grown != graph  # the extended graph, saved under the new exemplars' name
    reloaded = Bundle.load(bundle_dir)
    assert len(reloaded.title_exemplars.vectors) == count + 4
    assert len(reloaded.title_exemplars.index()) == count + 4  # loaded from the file, not rebuilt
    assert grown.stat().st_mtime_ns == next(bundle_dir.glob("exemplars-*.usearch")).stat().st_mtime_ns
    # A fresh process that enrolls before any query: the saved graph is loaded and extended by
    # the new images only, not built again (minutes at a million exemplars).
    from usearch.index import Index

    added = []
    real_add = Index.add
    monkeypatch.setattr(Index, "add", lambda self, keys, *a, **k: added.append(len(keys)) or real_add(
        self, keys, *a, **k))
    report = enroll(bundle_dir, [EnrollImage(p, "third theme", "new author") for p in images[4:7]], "test",
                    progress=False)
    assert report.images == 3 and added == [3]
    after = StyleFinder(bundle_dir).query(images[:1])[0]
    assert "new theme" in [t.title for t in after.titles]  # its own image, now enrolled, is among them
    assert "new theme" not in [t.title for t in before.titles]
