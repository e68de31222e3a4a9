"""Titles ranked by their nearest exemplars: a title whose images form two clusters is first for
an image of one of them, where ranking by title means puts first a title that lies between the
clusters, nearer the image than the two-cluster title's mean. Exemplar-ranked scores are what
the docs say: 0.9 of the exemplar score and 0.1 of the mean's similarity."""

from dataclasses import replace

import numpy as np
import pytest

from inference.bundle import TitleEntry
from inference.query import DEMO_BUNDLE, MEAN_WEIGHT, StyleFinder
from inference.search import unit_rows
from inference.title_exemplars import TitleExemplars


def _finder(ranking: str) -> StyleFinder:
    """The demo model, with two made-up titles in a 3-d embedding space: "two sides" has images
    along x and along y, "middle" lies between them, nearer x."""
    finder = StyleFinder(DEMO_BUNDLE, ranking=ranking)
    x, y = np.eye(3, dtype=np.float32)[:2]
    diagonal = unit_rows(0.8 * x + 0.6 * y)
    sides = unit_rows(np.stack([x, x + 0.05 * y, x - 0.05 * y, y, y + 0.05 * x, y - 0.05 * x]))
    middle = unit_rows(np.stack([diagonal, diagonal + 0.05 * x, diagonal + 0.05 * y]))
    vectors = np.vstack([sides, middle]).astype(np.float32)
    titles = np.array([0] * 6 + [1] * 3, np.int32)
    means = unit_rows(np.stack([sides.mean(0), middle.mean(0)]))
    exemplars = TitleExemplars("embedding", np.zeros(3, np.float32), None, vectors, titles)
    bundle = replace(finder.bundle, titles=[TitleEntry("two sides", None, (), (), 6),
                                            TitleEntry("middle", None, (), (), 3)],
                     title_embeddings=means.astype(np.float32), exemplars=exemplars, enrolled=[])
    finder._catalog = finder._open_catalog(bundle, finder._catalog.stamp)
    return finder


def _ranked(finder: StyleFinder, embedding: np.ndarray):
    outputs = {"embedding": embedding[None].astype(np.float32)}
    (result,) = finder.answer(outputs, ["query"], k=2)
    return result.titles


def test_a_title_of_two_clusters_is_first_for_an_image_of_one_of_them():
    query = unit_rows(np.eye(3, dtype=np.float32)[0] + 0.02)
    by_means = _ranked(_finder("means"), query)
    by_exemplars = _ranked(_finder("exemplars"), query)
    assert by_means[0].title == "middle"  # the two-sided title's mean sits between its clusters
    assert by_exemplars[0].title == "two sides"
    finder = _finder("exemplars")
    similarity = finder.bundle.title_embeddings @ query
    nearest = np.sort(finder.bundle.title_exemplars.vectors[:6] @ query)[::-1][:3].mean()
    top = by_exemplars[0]
    assert top.score == pytest.approx((1 - MEAN_WEIGHT) * nearest + MEAN_WEIGHT * similarity[0], abs=1e-5)
    assert top.similarity == pytest.approx(similarity[0], abs=1e-6)  # still the mean's cosine


def test_an_unknown_ranking_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown ranking 'nearest'; choose from exemplars, means"):
        StyleFinder(DEMO_BUNDLE, ranking="nearest")
