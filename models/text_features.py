"""TF-IDF features of one text, in plain Python and numpy, as scikit-learn computes them.

Training fits scikit-learn's `TfidfVectorizer`; the query path must not import scikit-learn,
so the fitted vocabulary and idf weights are saved and this module recomputes the same
features: the same lower-casing, the same token pattern, the same word and `char_wb` n-grams,
sublinear tf, idf, and L2 normalisation per block. `tests/test_text_genres.py` checks the two
agree on English and Korean text.

Several blocks (words, characters) are concatenated, each normalised on its own, as
`scipy.sparse.hstack` of several vectorizers' outputs would be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# scikit-learn's defaults: tokens of two or more word characters; runs of whitespace are one space.
WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")
_WHITE_SPACES = re.compile(r"\s\s+")
ANALYZERS = ("word", "char_wb")


def word_ngrams(text: str, max_n: int) -> list[str]:
    """Lower-cased word 1..max_n-grams, joined by one space."""
    tokens = WORD_PATTERN.findall(text.lower())
    grams = list(tokens)
    for n in range(2, min(max_n, len(tokens)) + 1):
        grams.extend(" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return grams


def char_wb_ngrams(text: str, min_n: int, max_n: int) -> list[str]:
    """Lower-cased character n-grams inside words, each word padded with one space on both sides.

    This is what lets Korean, with no spaces between many morphemes, share features between
    inflected forms of one stem."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text.lower()).split():
        padded = f" {word} "
        for n in range(min_n, max_n + 1):
            if len(padded) <= n:  # a short word counts once, whole
                grams.append(padded)
                break
            grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


@dataclass(frozen=True)
class TfidfBlock:
    """One fitted vectorizer: what it cuts text into, and the weight of each term it kept."""

    analyzer: str  # "word" or "char_wb"
    ngram_range: tuple[int, int]
    # Column i is terms[i], sorted as scikit-learn sorts its vocabulary: a text's terms are found
    # by binary search, so opening a model builds no dictionary of its 100,000s of terms.
    terms: np.ndarray  # str [n]
    idf: np.ndarray  # float32 [n]

    def __post_init__(self) -> None:
        if self.analyzer not in ANALYZERS:
            raise ValueError(f"unknown analyzer {self.analyzer!r}; known: {', '.join(ANALYZERS)}")
        terms = np.asarray(self.terms, dtype=str)
        if len(terms) != len(self.idf):
            raise ValueError(f"{len(terms)} terms but {len(self.idf)} idf weights")
        if len(terms) > 1 and not bool(np.all(terms[:-1] < terms[1:])):
            raise ValueError("terms must be sorted and distinct")
        object.__setattr__(self, "terms", terms)

    @property
    def size(self) -> int:
        return len(self.terms)

    def grams(self, text: str) -> list[str]:
        low, high = self.ngram_range
        if self.analyzer == "word":
            grams = word_ngrams(text, high)
            return grams if low == 1 else [g for g in grams if g.count(" ") + 1 >= low]
        return char_wb_ngrams(text, low, high)

    def features(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of the text's L2-normalised sublinear TF-IDF row; empty when no term is known."""
        grams = self.grams(text)
        if not grams or not len(self.terms):
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        unique, counts = np.unique(np.array(grams, dtype=str), return_counts=True)
        found = np.minimum(np.searchsorted(self.terms, unique), len(self.terms) - 1)
        known = self.terms[found] == unique
        if not known.any():
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        index, tf = found[known].astype(np.int64), counts[known].astype(np.float64)
        values = (1.0 + np.log(tf)) * self.idf[index]
        values /= np.linalg.norm(values)
        return index, values.astype(np.float32)


def sparse_rows(blocks: list[TfidfBlock], texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR parts (indptr, indices, data) of the texts' rows over the blocks side by side."""
    indptr, indices, data = [0], [], []
    for text in texts:
        offset = 0
        for block in blocks:
            columns, values = block.features(text)
            indices.append(columns + offset)
            data.append(values)
            offset += block.size
        indptr.append(indptr[-1] + sum(len(c) for c in indices[len(indices) - len(blocks) :]))
    return (
        np.asarray(indptr, np.int64),
        np.concatenate(indices) if indices else np.zeros(0, np.int64),
        np.concatenate(data) if data else np.zeros(0, np.float32),
    )
