"""Naming authors the softmax head was never trained on: a nearest-title classifier.

Every title in the bundle, trained or enrolled, is a prototype: its unit mean descriptor (the
model's hidden-layer output, which tells unseen titles apart far better than the embedding;
the embedding for bundles without one). An image's cosine similarities to the titles become
probabilities through a softmax whose temperature is fitted on the bundle's validation images
at export (each image against its own title), and an author's probability is the sum over its
titles: an author whose titles differ in style is a mixture of them, as in the trained
model's own author mixture.

The two are combined so that a bundle with nothing enrolled answers exactly as before:
- the title classifier decides how much probability goes to enrolled authors: q, the sum of
  its probabilities for them;
- the head shares the rest, 1 - q, among the trained authors in its own proportions;
- each enrolled author gets its title-classifier probability.
With no enrolled author q = 0 and the head's answer is unchanged; a trained author's
probability is its head probability scaled by the chance that the image is by a trained
author at all. Titles, not author means, are the prototypes because an image of a trained
author lands near that author's titles and leaves q small: measured on the icons, author-mean
prototypes moved trained authors' top-1 by 0.04, title prototypes by under 0.01
(docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np

TEMPERATURES = np.geomspace(1.0, 200.0, 60)


def title_author_matrix(title_authors: list[str | None], authors: list[str]) -> np.ndarray:
    """[titles, authors] with a 1 where a title belongs to an author."""
    matrix = np.zeros((len(title_authors), len(authors)), np.float32)
    index = {a: i for i, a in enumerate(authors)}
    for row, author in enumerate(title_authors):
        if author in index:
            matrix[row, index[author]] = 1.0
    return matrix


def title_probabilities(embeddings: np.ndarray, title_embeddings: np.ndarray,
                        temperature: float) -> np.ndarray:
    """[n, titles]: softmax(temperature * cosine) over the titles."""
    logits = temperature * (embeddings @ title_embeddings.T)
    logits -= logits.max(axis=1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=1, keepdims=True)


def fit_temperature(embeddings: np.ndarray, titles: np.ndarray, title_embeddings: np.ndarray) -> float:
    """The temperature that maximises the likelihood of each held-out image's own title
    (`titles`: row indices into `title_embeddings`): a one-parameter calibration."""
    best, best_loss = float(TEMPERATURES[0]), np.inf
    for temperature in TEMPERATURES:
        probabilities = title_probabilities(embeddings, title_embeddings, float(temperature))
        loss = -np.mean(np.log(probabilities[np.arange(len(titles)), titles] + 1e-12))
        if loss < best_loss:
            best, best_loss = float(temperature), loss
    return best


def combine(head: np.ndarray, prototype: np.ndarray, trained: int) -> np.ndarray:
    """Head probabilities over the first `trained` authors and title-classifier probabilities
    over all of them -> probabilities over all authors (see the module docstring)."""
    enrolled = prototype[..., trained:]
    to_enrolled = enrolled.sum(axis=-1, keepdims=True)
    return np.concatenate([head * (1.0 - to_enrolled), enrolled], axis=-1)
