"""Naming authors the softmax head was never trained on: a nearest-title classifier.

Every title in the bundle, trained or enrolled, is scored by its nearest exemplars
(inference/title_exemplars.py). The scores become title probabilities through a softmax
with a temperature T and, for enrolled titles, an additive bias b:

    p(title | image) = softmax(T * score + b * enrolled)

Both are fitted by maximum likelihood of the right author (the sum of its titles'
probabilities) on leave-one-out queries, up to 64 images of each title scored against all
the others, each title weighted equally: at export (T only: nothing is enrolled) and again
after every enroll or removal. The author's likelihood, not the title's: titles by one author
often look alike, and telling them apart is not what the classifier is for. The bias is
needed because the network was trained to pull its own titles' images together, not the
enrolled ones': an enrolled title's images sit farther from each other, and without the bias
the classifier undersells them.

The head and the title classifier are combined so that a bundle with nothing enrolled answers
exactly as before:
- q, the title classifier's probability for titles of enrolled authors, goes to those
  authors (each gets its titles' probabilities);
- the head shares the rest, 1 - q, among the trained authors in its own proportions;
- a trained author's enrolled titles add their title probability to that author, and the
  whole is renormalised: the head already speaks for that author's style, so this evidence
  is added to it rather than taken out of the head's share.
With nothing enrolled, q = 0 and there is nothing to add: the head's answer. The measured
trade-offs of these choices are in docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np

from inference.title_exemplars import TitleExemplars

TEMPERATURES = np.geomspace(1.0, 200.0, 40)
BIASES = np.linspace(-2.0, 4.0, 25)


def title_author_matrix(title_authors: list, authors: list) -> np.ndarray:
    """[titles, authors] with a 1 where a title belongs to an author."""
    matrix = np.zeros((len(title_authors), len(authors)), np.float32)
    index = {a: i for i, a in enumerate(authors)}
    for row, author in enumerate(title_authors):
        if author in index:
            matrix[row, index[author]] = 1.0
    return matrix


def title_probabilities(scores: np.ndarray, temperature: float, bias: float, enrolled: np.ndarray
                        ) -> np.ndarray:
    """[n, titles] title scores -> probabilities (module docstring); `enrolled`: [titles] mask."""
    logits = temperature * scores + bias * enrolled
    logits = logits - logits.max(axis=-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(axis=-1, keepdims=True)


def fit_calibration(scores: np.ndarray, titles: np.ndarray, enrolled: np.ndarray, authors: np.ndarray
                    ) -> tuple[float, float]:
    """(temperature, bias) maximising the likelihood of each held-out query's author, the sum
    of its titles' probabilities (`titles`: each query's title row; `authors`: [titles, authors]
    one-hot), every title weighted equally; bias 0 with nothing enrolled.

    The bias only shifts the enrolled titles' logits, so for each temperature four sums of
    exponentials per query (over trained and enrolled titles, all and the query author's own)
    give the likelihood at every bias: one pass over [queries, titles] per temperature, not one
    per (temperature, bias) with a product by the author matrix, which a catalog of 10,000
    titles could not afford."""
    weights = 1.0 / np.bincount(titles, minlength=scores.shape[1])[titles]
    title_author = authors.argmax(axis=1)
    is_enrolled = np.asarray(enrolled, bool)
    biases = BIASES if is_enrolled[titles].any() else np.zeros(1)
    scores = np.asarray(scores, np.float32)
    # The (query, title) pairs where the title is by the query's author: few per query.
    pair_query, pair_title = np.nonzero(title_author[None, :] == title_author[titles][:, None])
    pair_enrolled = is_enrolled[pair_title]
    top = scores.max(axis=1)
    best, best_loss = (float(TEMPERATURES[0]), 0.0), np.inf
    for temperature in TEMPERATURES:
        # exp(T (s - max s)) once per temperature; the four sums are a product and two bincounts.
        shifted = np.exp(np.float32(temperature) * (scores - top[:, None]))
        sums = [shifted @ (~is_enrolled).astype(np.float32), shifted @ is_enrolled.astype(np.float32)]
        own = shifted[pair_query, pair_title]
        sums += [np.bincount(pair_query[~pair_enrolled], own[~pair_enrolled], len(titles)),
                 np.bincount(pair_query[pair_enrolled], own[pair_enrolled], len(titles))]
        with np.errstate(divide="ignore"):
            parts = [np.log(np.asarray(x, np.float64)) for x in sums]
        for bias in biases:
            total = np.logaddexp(parts[0], bias + parts[1])
            mine = np.logaddexp(parts[2], bias + parts[3])
            likelihood = np.maximum(mine - total, np.log(1e-12))
            loss = -float((likelihood * weights).sum() / weights.sum())
            if loss < best_loss:
                best, best_loss = (float(temperature), float(bias)), loss
    return best


def combine(head: np.ndarray, by_title: np.ndarray, title_to_author: np.ndarray, enrolled: np.ndarray
            ) -> np.ndarray:
    """Head probabilities over the trained authors (the first head.shape[-1] columns of
    `title_to_author`) and title probabilities -> probabilities over all authors (module
    docstring). `enrolled`: [titles] mask of enrolled titles."""
    trained = head.shape[-1]
    by_author = by_title @ title_to_author
    to_new = by_author[..., trained:].sum(axis=-1, keepdims=True)
    added = (by_title * enrolled) @ title_to_author[:, :trained]
    combined = np.concatenate([head * (1.0 - to_new) + added, by_author[..., trained:]], axis=-1)
    return combined / combined.sum(axis=-1, keepdims=True)


def calibrate(exemplars: TitleExemplars, title_authors: list[str | None], enrolled: np.ndarray
              ) -> tuple[float, float]:
    """(temperature, bias) fitted leave-one-out on the exemplars (module docstring); (0, 0),
    not calibrated, when no trained title has two exemplars to hold one out from. A title
    without an author counts as its own."""
    scores, titles = exemplars.leave_one_out(len(title_authors), favoured=np.asarray(enrolled, bool))
    if not len(titles) or enrolled[titles].all():
        # Nothing to hold out, or only enrolled titles to hold out from (a bundle exported
        # before exemplars: a trained title's mean is its one exemplar): the bias would have
        # nothing to trade against.
        return 0.0, 0.0
    names = [author if author is not None else ("", row) for row, author in enumerate(title_authors)]
    return fit_calibration(scores, titles, enrolled, title_author_matrix(names, list(dict.fromkeys(names))))

