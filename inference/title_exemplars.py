"""Every title's images, kept as exemplars, for naming the authors of enrolled titles.

A title is scored by the mean cosine similarity of its `NEIGHBOURS` nearest exemplars, not by
the similarity to its mean: an icon theme or a webtoon's thumbnails are several clusters
(folders, apps, faces, landscapes), and a title whose mean sits between its clusters looks far
from every image of it. On the icon benchmark the nearest exemplars named new authors right
60 times of 74 against 51 for the title means, at a smaller cost to trained authors
(docs/benchmarks.md).

The exemplars live in the model's hidden-layer `descriptor` output (the embedding for models
without one), projected onto its `EXEMPLAR_DIM` leading principal directions fitted on the
training images at export, and stored in float16: a sixteenth of the storage of the full
descriptor in float32, for 2 of the benchmark's 74 new-author images (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.search import unit_rows

NEIGHBOURS = 3
EXEMPLAR_DIM = 128
CALIBRATION_QUERIES = 64  # per title: leave-one-out queries for fitting the temperature
CALIBRATION_BUDGET = 4096  # queries in all: a catalog of thousands of titles gets fewer per title
QUERY_CHUNK = 512  # queries scored at once (a [chunk, exemplars] similarity matrix)


@dataclass(frozen=True)
class TitleExemplars:
    output: str  # the model output they come from: "descriptor" or "embedding"
    mean: np.ndarray  # [D] subtracted before projecting
    basis: np.ndarray | None  # [D, d] principal directions; None: no projection
    vectors: np.ndarray  # [N, d] unit rows
    titles: np.ndarray  # [N] each exemplar's row in bundle.titles

    @classmethod
    def fit(cls, output: str, outputs: np.ndarray, titles: np.ndarray, dim: int = EXEMPLAR_DIM
            ) -> TitleExemplars:
        """Exemplars of `outputs` ([N, D] of one model output, `titles` their title rows),
        projected on principal directions fitted on them."""
        units = unit_rows(outputs.astype(np.float32))
        mean = units.mean(axis=0)
        dim = min(dim, units.shape[1], max(len(units) - 1, 1))
        _, _, directions = np.linalg.svd(units - mean, full_matrices=False)
        space = cls(output, mean.astype(np.float32), directions[:dim].T.astype(np.float32),
                    np.zeros((0, dim), np.float32), np.zeros(0, np.int32))
        return space.extended(space.project(outputs), titles)

    @classmethod
    def of_means(cls, title_vectors: np.ndarray) -> TitleExemplars:
        """Bundles exported before exemplars: each title's mean embedding is its one exemplar."""
        rows = np.arange(len(title_vectors), dtype=np.int32)
        return cls("embedding", np.zeros(title_vectors.shape[1], np.float32), None,
                   unit_rows(title_vectors.astype(np.float32)), rows)

    @classmethod
    def from_arrays(cls, arrays) -> TitleExemplars:
        basis = arrays["exemplar_basis"]
        return cls(str(arrays["exemplar_output"]), arrays["exemplar_mean"].astype(np.float32),
                   basis.astype(np.float32) if basis.size else None,
                   arrays["exemplars"].astype(np.float32), arrays["exemplar_titles"].astype(np.int32))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"exemplar_output": np.array(self.output), "exemplar_mean": self.mean,
                "exemplar_basis": self.basis if self.basis is not None else np.zeros((0, 0), np.float32),
                "exemplars": self.vectors.astype(np.float16), "exemplar_titles": self.titles}

    def fits(self, n_titles: int) -> bool:
        """Whether these exemplars can belong to a bundle of `n_titles` titles."""
        dim = self.basis.shape[1] if self.basis is not None else self.mean.shape[0]
        return (self.vectors.ndim == 2 and self.vectors.shape == (len(self.titles), dim)
                and bool(np.all((self.titles >= 0) & (self.titles < n_titles))))

    def project(self, outputs: np.ndarray) -> np.ndarray:
        """[n, D] model outputs -> [n, d] unit vectors in the exemplar space."""
        units = unit_rows(np.asarray(outputs, np.float32))
        if self.basis is None:
            return units
        return unit_rows((units - self.mean) @ self.basis)

    def extended(self, projected: np.ndarray, titles: np.ndarray) -> TitleExemplars:
        """With more exemplars (already projected) of the given title rows."""
        return TitleExemplars(self.output, self.mean, self.basis,
                              np.vstack([self.vectors, projected.astype(np.float32)]),
                              np.concatenate([self.titles, np.asarray(titles, np.int32)]))

    def kept(self, rows: list[int]) -> TitleExemplars:
        """Only the exemplars of title rows `rows`, renumbered in that order (a title removed)."""
        renumber = np.full(int(self.titles.max(initial=-1)) + 1, -1, np.int32)
        renumber[np.asarray(rows, np.int64)] = np.arange(len(rows), dtype=np.int32)
        keep = renumber[self.titles] >= 0
        return TitleExemplars(self.output, self.mean, self.basis, self.vectors[keep],
                              renumber[self.titles[keep]])

    def scores(self, queries: np.ndarray, n_titles: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """[n, titles]: each title's mean cosine over its NEIGHBOURS nearest exemplars (all of
        them if it has fewer; -1 if none). `exclude`: per query, an exemplar row to leave out."""
        similarity = queries @ self.vectors.T
        if exclude is not None:
            similarity[np.arange(len(queries)), exclude] = -np.inf
        scores = np.full((len(queries), n_titles), -1.0, np.float32)
        for title in range(n_titles):
            block = similarity[:, self.titles == title]
            if block.shape[1] == 0:
                continue
            k = min(NEIGHBOURS, block.shape[1])
            nearest = np.partition(block, block.shape[1] - k, axis=1)[:, -k:]
            finite = np.isfinite(nearest)  # a left-out query among them: the mean of the rest
            total = np.where(finite, nearest, 0.0).sum(axis=1)
            scores[:, title] = np.where(finite.any(axis=1), total / np.maximum(finite.sum(axis=1), 1), -1.0)
        return scores

    def leave_one_out(self, n_titles: int, per_title: int = CALIBRATION_QUERIES, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Scores of up to `per_title` exemplars of each title against all the others, and
        their titles: held-out figures for calibration, from the bundle's own images. Titles
        with a single exemplar have nothing to hold out and only compete."""
        rng = np.random.default_rng(seed)
        members = [m for m in (np.flatnonzero(self.titles == t) for t in range(n_titles)) if len(m) >= 2]
        per_title = max(1, min(per_title, CALIBRATION_BUDGET // max(len(members), 1)))
        chosen = np.concatenate([rng.permutation(m)[:per_title] for m in members]
                                + [np.zeros(0, np.int64)]).astype(np.int64)
        scores = [self.scores(self.vectors[part], n_titles, exclude=part)
                  for part in np.array_split(chosen, max(1, -(-len(chosen) // QUERY_CHUNK)))]
        return np.concatenate(scores), self.titles[chosen]

