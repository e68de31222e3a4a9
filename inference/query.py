"""`find_similar(image, bundle, k)`: the one query function behind the CLI, the reports and the web app.

Encode once, search many: a `StyleFinder` opens a bundle's model and title index
once, then answers any number of images. Nothing here imports TensorFlow unless
the bundle has no model.tflite.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.images import DEFAULT_MAX_PIXELS, load_resized
from inference.bundle import Bundle, BundleError
from inference.runner import ModelRunner, open_runner
from inference.search import build_index

MODES = ("embedding", "author")
DEMO_BUNDLE = Path(__file__).with_name("demo_bundle")
HNSW_GRAPH = "title_index.usearch"  # built by the first --index approximate query, then reused
TOP_AUTHORS = 3

ImageInput = str | os.PathLike | Image.Image


@dataclass(frozen=True)
class AuthorGuess:
    name: str
    probability: float
    prior: float  # the author's share of training images: what guessing blindly would give


@dataclass(frozen=True)
class GenreGuess:
    name: str
    probability: float
    threshold: float


@dataclass(frozen=True)
class SimilarTitle:
    rank: int
    title: str
    author: str | None
    score: float  # cosine similarity (embedding mode) or author probability (author mode)
    similarity: float  # cosine similarity in both modes
    thumbnail: str | None  # absolute path of a representative thumbnail
    genres: tuple[str, ...]


@dataclass(frozen=True)
class SimilarityResult:
    image: str
    mode: str
    backend: str
    authors: tuple[AuthorGuess, ...]
    genres: tuple[GenreGuess, ...]
    titles: tuple[SimilarTitle, ...]
    unknown_author: bool
    open_set: dict[str, float]  # the image's best author probability and title similarity, thresholds

    def to_dict(self) -> dict:
        return asdict(self)


class StyleFinder:
    """A bundle opened for queries: its runner, its title index and its labels."""

    def __init__(self, bundle: Bundle | str | os.PathLike | None = None, backend: str = "auto",
                 index: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle or DEMO_BUNDLE)
        self.runner: ModelRunner = open_runner(self.bundle, backend)
        self.index = build_index(self.bundle.title_embeddings, index, self.bundle.path / HNSW_GRAPH)
        self.max_pixels = max_pixels
        self._lock = threading.Lock()  # a LiteRT interpreter runs one call at a time
        self.title_authors = np.array([self.bundle.authors.index(t.author) if t.author in self.bundle.authors
                                       else -1 for t in self.bundle.titles])

    @property
    def backend(self) -> str:
        return self.runner.backend

    def query(self, images: list[ImageInput], k: int = 10, mode: str = "embedding",
              names: list[str] | None = None) -> list[SimilarityResult]:
        """One result per image; an unreadable image raises ImageError naming it."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if mode == "author" and not self.bundle.authors:
            raise BundleError(f"{self.bundle.path}: this bundle has no author head; use --mode embedding")
        if not k >= 1:
            raise ValueError(f"k must be at least 1, got {k}")
        pixels = np.stack([load_resized(image, self.bundle.image_size, self.max_pixels) for image in images])
        with self._lock:
            outputs = self.runner(pixels.astype(np.float32) / 255.0)
        names = names or [_name(image) for image in images]
        return [self._result(names[i], {key: value[i] for key, value in outputs.items()}, k, mode)
                for i in range(len(images))]

    def _result(self, name: str, output: dict[str, np.ndarray], k: int, mode: str) -> SimilarityResult:
        bundle = self.bundle
        embedding = output["embedding"] / max(float(np.linalg.norm(output["embedding"])), 1e-12)
        authors: tuple[AuthorGuess, ...] = ()
        if "author" in output and bundle.authors:
            probabilities = output["author"]
            top = np.argsort(-probabilities, kind="stable")[:TOP_AUTHORS]
            authors = tuple(AuthorGuess(bundle.authors[i], float(probabilities[i]), bundle.author_prior[i])
                            for i in top)
        genres: tuple[GenreGuess, ...] = ()
        if "genres" in output and bundle.genres:
            scores = output["genres"]
            thresholds = bundle.genre_thresholds
            chosen = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= thresholds[i]]
            genres = tuple(GenreGuess(bundle.genres[i], float(scores[i]), bundle.genre_thresholds[i])
                           for i in chosen)
        if mode == "author":
            rows, scores, similarities = self._by_author(output["author"], embedding, k)
        else:
            found_rows, found_scores = self.index.search(embedding[None], k)
            rows, scores, similarities = found_rows[0], found_scores[0], found_scores[0]
        titles = tuple(self._title(rank + 1, int(row), float(score), float(similarity))
                       for rank, (row, score, similarity) in enumerate(zip(rows, scores, similarities,
                                                                           strict=True)))
        best_similarity = float(similarities.max()) if mode == "embedding" else \
            float((bundle.title_embeddings @ embedding).max())
        evidence = {"title_similarity": best_similarity, **{f"{key}_threshold": value
                                                            for key, value in bundle.open_set.items()}}
        if authors:
            evidence["author_probability"] = authors[0].probability
        return SimilarityResult(name, mode, self.backend, authors, genres, titles,
                                _is_unknown(evidence, bundle.open_set), evidence)

    def _by_author(self, probabilities: np.ndarray, embedding: np.ndarray, k: int):
        """The webtoon study's ranking: titles of the likeliest authors, by that author's probability,
        then by similarity within an author."""
        similarity = self.bundle.title_embeddings @ embedding
        author_probability = np.where(self.title_authors >= 0, probabilities[self.title_authors], 0.0)
        order = np.lexsort((-similarity, -author_probability))[:k]
        return order, author_probability[order], similarity[order]

    def _title(self, rank: int, row: int, score: float, similarity: float) -> SimilarTitle:
        entry = self.bundle.titles[row]
        thumbnail = str(self.bundle.path.resolve() / entry.thumbnails[0]) if entry.thumbnails else None
        return SimilarTitle(rank, entry.name, entry.author, score, similarity, thumbnail, entry.genres)


    def document(self, results: list[SimilarityResult], errors: list[str]) -> dict:
        """The JSON document of `python -m inference.similar --json` and of the web API."""
        return {"bundle": {"path": str(self.bundle.path.resolve()), "name": self.bundle.name,
                           "version": self.bundle.version},
                "backend": self.backend, "index": self.index.kind,
                "results": [r.to_dict() for r in results], "errors": errors}


def _is_unknown(evidence: dict[str, float], thresholds: dict[str, float]) -> bool:
    """Unknown only when every calibrated signal is below its threshold (none calibrated: never)."""
    signals = [(evidence[key], thresholds[key]) for key in ("author_probability", "title_similarity")
               if key in thresholds and key in evidence]
    return bool(signals) and all(value < threshold for value, threshold in signals)


def _name(image: ImageInput) -> str:
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or "<image>"
    return str(image)


_FINDERS: dict[Path, StyleFinder] = {}


def find_similar(image: ImageInput, bundle: StyleFinder | Bundle | str | os.PathLike | None = None,
                 k: int = 10, mode: str = "embedding") -> SimilarityResult:
    """The top-k titles for one image. A bundle given by path is opened once per process and kept."""
    if not isinstance(bundle, StyleFinder):
        key = (bundle.path if isinstance(bundle, Bundle) else Path(bundle or DEMO_BUNDLE)).resolve()
        if key not in _FINDERS:
            _FINDERS[key] = StyleFinder(bundle)
        bundle = _FINDERS[key]
    return bundle.query([image], k, mode)[0]
