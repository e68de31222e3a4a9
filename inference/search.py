"""Top-k title search over unit-length embeddings: exact numpy by default, usearch HNSW for huge catalogs.

Both indexes answer the same call, `index.search(queries, k) -> (rows, scores)`,
with cosine similarity as the score, best first.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Exact search over 100k titles of 128 dims takes a few milliseconds on two cores;
# past about this many titles an approximate index starts to pay for its build time.
APPROXIMATE_ABOVE = 100_000


class ExactIndex:
    """Brute-force cosine search: one matrix product and a partial sort."""

    kind = "exact"

    def __init__(self, vectors: np.ndarray):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.vectors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        k = min(k, len(self.vectors))
        scores = (self.vectors @ queries.T).T  # a matrix-vector product for one query: half the time
        if k < scores.shape[1]:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(scores.shape[1]), (len(queries), scores.shape[1]))
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)


class ApproximateIndex:
    """HNSW graph from usearch (the `ann` extra); recall is high but not guaranteed to be 1."""

    kind = "approximate"

    def __init__(self, vectors: np.ndarray, connectivity: int = 16, expansion_search: int = 128):
        try:
            from usearch.index import Index
        except ImportError:
            raise ImportError("approximate search needs usearch: pip install 'stylefinder[ann]'") from None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.size = len(vectors)
        self.index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=connectivity,
                           expansion_search=expansion_search)
        self.index.add(np.arange(len(vectors), dtype=np.uint64), vectors)

    def __len__(self) -> int:
        return self.size

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        k = min(k, self.size)
        found = self.index.search(queries, k)
        keys = np.asarray(found.keys, np.int64).reshape(len(queries), -1)[:, :k]
        # usearch's "ip" metric is a distance: 1 - dot product.
        scores = 1.0 - np.asarray(found.distances, np.float32).reshape(len(queries), -1)[:, :k]
        return keys, scores


INDEXES: dict[str, Callable[[np.ndarray], ExactIndex | ApproximateIndex]] = {
    "exact": ExactIndex,
    "approximate": ApproximateIndex,
}


def build_index(vectors: np.ndarray, kind: str = "auto") -> ExactIndex | ApproximateIndex:
    """`auto` is exact up to APPROXIMATE_ABOVE titles, and approximate beyond when usearch is installed."""
    if kind == "auto":
        kind = "exact"
        if len(vectors) > APPROXIMATE_ABOVE:
            try:
                import usearch  # noqa: F401
                kind = "approximate"
            except ImportError:
                pass
    if kind not in INDEXES:
        raise ValueError(f"unknown index kind {kind!r}; choose from auto, {', '.join(INDEXES)}")
    return INDEXES[kind](vectors)
