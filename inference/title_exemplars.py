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

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.search import unit_rows

NEIGHBOURS = 3
EXEMPLAR_DIM = 128
CALIBRATION_QUERIES = 64  # per title: leave-one-out queries for fitting the temperature
CALIBRATION_BUDGET = 4096  # queries in all: a catalog of thousands of titles gets fewer per title
# Past EXACT_EXEMPLARS a query costs ~9 ms (graph, then its candidate titles scored exactly): 1,024
# leave-one-out queries keep the calibration of an enroll into a million exemplars near 10 s.
GRAPH_CALIBRATION_BUDGET = 1024
QUERY_CHUNK = 512  # queries scored at once (a [chunk, exemplars] similarity matrix)
EXACT_EXEMPLARS = 50_000  # compared one by one up to here; an HNSW graph past it
CANDIDATES = 256  # exemplars retrieved per query from the graph
AVERAGE_CANDIDATES = 64  # titles nearest on average over all their exemplars, also scored exactly
# The graph holds int8 vectors and links each to its 64-best of 16: builds 4.7x faster than float32
# at 128 (measured on 50,000 clustered exemplars, docs/benchmarks.md) with the same recall of the
# 10 nearest among the 256 candidates, which are then scored exactly in float32.
GRAPH_DTYPE, GRAPH_EXPANSION_ADD = "i8", 64


@dataclass(frozen=True)
class TitleExemplars:
    output: str  # the model output they come from: "descriptor" or "embedding"
    mean: np.ndarray  # [D] subtracted before projecting
    basis: np.ndarray | None  # [D, d] principal directions; None: no projection
    vectors: np.ndarray  # [N, d] unit rows
    titles: np.ndarray  # [N] each exemplar's row in bundle.titles
    # Catalog-scale bundles only: the HNSW graph of the vectors, and the folder it is saved in.
    _index: object = field(default=None, repr=False, compare=False)
    graph_dir: Path | None = field(default=None, repr=False, compare=False)
    _groups: tuple | None = field(default=None, repr=False, compare=False)  # see _grouped

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
        # The graph goes along, the one saved for these exemplars if none is loaded yet: appending to
        # it is much cheaper than building it again (seconds against minutes at a million).
        return TitleExemplars(self.output, self.mean, self.basis,
                              np.vstack([self.vectors, projected.astype(np.float32)]),
                              np.concatenate([self.titles, np.asarray(titles, np.int32)]),
                              self._index if self._index is not None else self._saved_graph(),
                              self.graph_dir)

    def _saved_graph(self):
        """The graph saved in graph_dir for exactly these exemplars, loaded; None if there is none."""
        path = self._graph_path()
        if path is None or not path.is_file():
            return None
        from inference.search import ApproximateIndex

        graph = ApproximateIndex(self.vectors, path, expansion_search=CANDIDATES,
                                 expansion_add=GRAPH_EXPANSION_ADD, dtype=GRAPH_DTYPE)
        object.__setattr__(self, "_index", graph)
        return graph

    def kept(self, rows: list[int]) -> TitleExemplars:
        """Only the exemplars of title rows `rows`, renumbered in that order (a title removed)."""
        renumber = np.full(int(self.titles.max(initial=-1)) + 1, -1, np.int32)
        renumber[np.asarray(rows, np.int64)] = np.arange(len(rows), dtype=np.int32)
        keep = renumber[self.titles] >= 0
        return TitleExemplars(self.output, self.mean, self.basis, self.vectors[keep],
                              renumber[self.titles[keep]])

    def scores(self, queries: np.ndarray, n_titles: int, exclude: np.ndarray | None = None) -> np.ndarray:
        """[n, titles]: each title's mean cosine over its NEIGHBOURS nearest exemplars (all of
        them if it has fewer; -1 if none). `exclude`: per query, an exemplar row to leave out.

        Up to `EXACT_EXEMPLARS` exemplars every one is compared. Past that, the `CANDIDATES`
        nearest are retrieved from an HNSW graph (`inference.search`); the titles they belong to,
        and the `AVERAGE_CANDIDATES` titles whose exemplars are nearest on average, are scored
        exactly over all of their exemplars. Every other title gets that average (its mean cosine
        over all its exemplars): never above its exact score, so no title is ranked on a guess
        above one scored exactly. (The farthest retrieved similarity, used before, is a bound from
        above: when one title held every candidate, all the others outranked the true second.)"""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        exclude = None if exclude is None else np.asarray(exclude)
        if len(self.vectors) <= EXACT_EXEMPLARS:
            similarity = queries @ self.vectors.T
            return _title_means(similarity, self.titles, n_titles, self._counts(n_titles), exclude)
        rows, _ = self.index().search(queries, CANDIDATES + (exclude is not None))
        order, starts, counts = self._grouped(n_titles)
        totals = queries @ self._title_sums(n_titles).T  # [n, titles] summed cosines
        out = np.empty((len(queries), n_titles), np.float32)
        for i, query in enumerate(queries):
            own = None if exclude is None else int(exclude[i])
            average = totals[i] / np.maximum(counts, 1)
            if own is not None and own >= 0:
                mine = self.titles[own]
                left = counts[mine] - 1
                average[mine] = (totals[i, mine] - self.vectors[own] @ query) / left if left else -1.0
            out[i] = np.where(counts > 0, average, -1.0)
            retrieved = rows[i][(rows[i] >= 0) & (rows[i] != (-1 if own is None else own))]
            nearest_on_average = np.argpartition(-out[i], min(AVERAGE_CANDIDATES, n_titles - 1))
            near = np.union1d(self.titles[retrieved], nearest_on_average[:AVERAGE_CANDIDATES])
            members = np.concatenate([order[starts[t]:starts[t + 1]] for t in near])
            found = None if own is None else np.flatnonzero(members == own)
            left_out = found if found is None or len(found) else np.array([-1])
            scored = _title_means((self.vectors[members] @ query)[None], self.titles[members], n_titles,
                                  counts, left_out)
            out[i, near] = scored[0, near]
        return out

    def _title_sums(self, n_titles: int) -> np.ndarray:
        """[titles, d] the sum of each title's exemplars: computed once, in chunks of the title
        order (1.5 s and one chunk of memory for a million)."""
        n, order, starts, counts, sums = self._grouped_all(n_titles)
        if sums is None:
            sums = np.zeros((n_titles, self.vectors.shape[1]), np.float32)
            for begin in range(0, len(order), QUERY_CHUNK * 128):
                rows = order[begin:begin + QUERY_CHUNK * 128]
                titles, first = np.unique(self.titles[rows], return_index=True)
                sums[titles] += np.add.reduceat(self.vectors[rows], first, axis=0)
            object.__setattr__(self, "_groups", (n, order, starts, counts, sums))
        return sums

    def rows_of_titles(self, n_titles: int) -> list[np.ndarray]:
        """Each title's exemplar rows, in title order."""
        order, starts, _ = self._grouped(n_titles)
        return [order[starts[t]:starts[t + 1]] for t in range(n_titles)]

    def _counts(self, n_titles: int) -> np.ndarray:
        return self._grouped(n_titles)[2]

    def _grouped(self, n_titles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exemplar rows ordered by title, where each title's run starts (n_titles + 1), and each
        title's count: computed once (a sort of a million titles is 0.1 s, more than a query)."""
        return self._grouped_all(n_titles)[1:4]

    def _grouped_all(self, n_titles: int) -> tuple:
        cached = self._groups
        if cached is None or cached[0] != n_titles:
            order = np.argsort(self.titles, kind="stable")
            starts = np.searchsorted(self.titles[order], np.arange(n_titles + 1))
            cached = (n_titles, order, starts, np.diff(starts), None)
            object.__setattr__(self, "_groups", cached)
        return cached

    def index(self):
        """The HNSW graph of the exemplars: carried over from before an enroll (and extended),
        else loaded from `graph_dir` when saved there for these exemplars, else built (and saved)."""
        from inference.search import ApproximateIndex

        graph = self._index
        if graph is not None and len(graph) < len(self.vectors):
            graph.extend(self.vectors)
        if graph is None or len(graph) != len(self.vectors):
            path = self._graph_path()
            graph = ApproximateIndex(self.vectors, path, expansion_search=CANDIDATES,
                                     expansion_add=GRAPH_EXPANSION_ADD, dtype=GRAPH_DTYPE)
            if path is not None:
                self.remove_stale_graphs()
        object.__setattr__(self, "_index", graph)
        return graph

    def _graph_path(self) -> Path | None:
        return self.graph_dir / f"exemplars-{self.digest()}.usearch" if self.graph_dir else None

    def save_graph(self) -> None:
        """Save a graph carried over and extended (an enroll) under these exemplars' name, so the
        next process loads it instead of building it again (ten minutes at a million)."""
        path = self._graph_path()
        graph = self._index
        if path is None or graph is None or path.is_file():
            return
        if len(graph) < len(self.vectors):
            graph.extend(self.vectors)
        if len(graph) == len(self.vectors):
            graph.save(path)

    def remove_stale_graphs(self) -> None:
        """Delete the graphs of other exemplars (an earlier state of the bundle) in graph_dir."""
        path = self._graph_path()
        if path is not None:
            for stale in self.graph_dir.glob("exemplars-*.usearch"):
                if stale != path:
                    stale.unlink(missing_ok=True)

    def digest(self) -> str:
        """Names a saved graph: the titles and a sample of the vectors (hashing all would cost
        about a second per million)."""
        step = max(1, len(self.vectors) // 4096)
        digest = hashlib.sha256(np.ascontiguousarray(self.titles).tobytes())
        # As stored (float16): a bundle saved after an enroll and loaded again names the same graph.
        digest.update(np.ascontiguousarray(self.vectors[::step], np.float16).tobytes())
        return digest.hexdigest()[:16]

    def leave_one_out(self, n_titles: int, per_title: int = CALIBRATION_QUERIES, seed: int = 0,
                      favoured: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores of up to `per_title` exemplars of each title against all the others, and
        their titles: held-out figures for calibration, from the bundle's own images. Titles
        with a single exemplar have nothing to hold out and only compete. Past the budget's
        number of titles, one exemplar each of that many titles: the `favoured` ones
        ([titles] mask, the enrolled: the bias is fitted on them) up to half, the rest drawn."""
        rng = np.random.default_rng(seed)
        budget = CALIBRATION_BUDGET if len(self.vectors) <= EXACT_EXEMPLARS else GRAPH_CALIBRATION_BUDGET
        members = [m for m in self.rows_of_titles(n_titles) if len(m) >= 2]
        if len(members) > budget:
            first = np.array([self.titles[m[0]] for m in members])
            wanted = np.zeros(len(members), bool) if favoured is None else np.asarray(favoured, bool)[first]
            picked = rng.permutation(np.flatnonzero(wanted))[:budget // 2]
            others = rng.permutation(np.flatnonzero(~wanted))[:budget - len(picked)]
            members = [members[i] for i in np.sort(np.concatenate([picked, others]))]
        per_title = max(1, min(per_title, budget // max(len(members), 1)))
        chosen = np.concatenate([rng.permutation(m)[:per_title] for m in members]
                                + [np.zeros(0, np.int64)]).astype(np.int64)
        scores = [self.scores(self.vectors[part], n_titles, exclude=part)
                  for part in np.array_split(chosen, max(1, -(-len(chosen) // QUERY_CHUNK)))]
        return np.concatenate(scores), self.titles[chosen]


def _title_means(similarity: np.ndarray, titles: np.ndarray, n_titles: int, counts: np.ndarray,
                 exclude: np.ndarray | None) -> np.ndarray:
    """[n, titles] mean of each title's NEIGHBOURS most similar columns of `similarity` [n, m]
    (`titles` [m]: each column's title; `counts`: each title's exemplars in all; `exclude`: per
    row, a column left out, -1 for none)."""
    n, m = similarity.shape
    wanted = np.broadcast_to(np.minimum(counts, NEIGHBOURS), (n, n_titles)).copy()
    if m == 0:
        return np.where(wanted > 0, 0.0, -1.0).astype(np.float32)
    order = np.argsort(titles, kind="stable")
    column_titles = titles[order]
    starts = np.searchsorted(column_titles, np.arange(n_titles + 1))
    # One plain sort per row (SIMD, ten times an argsort) groups each title's columns, nearest
    # first: the key is the column's title plus a place in [0, 0.9] that falls as similarity
    # rises; a left-out column gets 0.95, last in its title's run.
    finite = similarity[np.isfinite(similarity)]
    bound = max(1.0, float(np.abs(finite).max(initial=0.0)))
    key = 0.45 * (1.0 - similarity[:, order].astype(np.float64) / bound)
    if exclude is not None:
        hit = np.flatnonzero(exclude >= 0)
        place = np.empty(m, np.int64)
        place[order] = np.arange(m)
        key[hit, place[exclude[hit]]] = 0.95
        own = titles[exclude[hit]]  # the left-out exemplar's title has one fewer to compare
        wanted[hit, own] = np.minimum(counts[own] - 1, NEIGHBOURS)
    key += column_titles
    key.sort(axis=1)
    # The first NEIGHBOURS places of each title's run; a title with fewer columns (or none
    # here) reaches into the next run, and those places are masked out.
    first = np.minimum(starts[:-1, None] + np.arange(NEIGHBOURS), m - 1)  # [titles, K]
    ranked = bound * (1.0 - (key[:, first] - column_titles[first]) / 0.45)  # [n, titles, K]
    taken = np.minimum(wanted, np.diff(starts))  # columns present: all a title's, or none of it
    sums = np.where(np.arange(NEIGHBOURS) < taken[:, :, None], ranked, 0.0).sum(axis=2)
    return np.where(wanted > 0, sums / np.maximum(wanted, 1), -1.0).astype(np.float32)
