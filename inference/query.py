"""`find_similar(image, bundle, k)`: the one query function behind the CLI, the reports and the web app.

Encode once, search many: a `StyleFinder` opens a bundle's model and title index
once, then answers any number of images. Nothing here imports TensorFlow unless
the bundle has no LiteRT files (model.tflite, or an encoder and heads.tflite).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.images import DEFAULT_MAX_PIXELS, load_image, load_resized
from inference.author_prototypes import combine, title_author_matrix, title_probabilities
from inference.bundle import MANIFEST, Bundle, BundleError
from inference.results import AuthorGuess, GenreGuess, SimilarityResult, SimilarTitle
from inference.runner import ModelRunner, open_runner
from inference.search import build_index, unit_rows
from inference.style_map import voting_windows

MODES = ("embedding", "author")
RANKINGS = ("exemplars", "means")  # how embedding mode scores a title: see StyleFinder._by_exemplars
MEAN_WEIGHT = 0.1  # the title mean's share of an exemplar-ranked title's score (docs/benchmarks.md)
# For a bundle exported before the temperature was calibrated there: a middle value of the fitted range.
DEFAULT_PROTOTYPE_TEMPERATURE = 20.0
DEMO_BUNDLE = Path(__file__).with_name("demo_bundle")
HNSW_GRAPH = "title_index.usearch"  # built by the first --index approximate query, then reused
TOP_AUTHORS = 3

log = logging.getLogger(__name__)

ImageInput = str | os.PathLike | Image.Image


@dataclass(frozen=True)
class _Catalog:
    """What a query reads of a bundle besides its model, swapped whole when the bundle changes."""
    bundle: Bundle
    index: object  # ExactIndex or ApproximateIndex
    title_authors: np.ndarray  # each title's index into bundle.all_authors, -1 for none
    title_to_author: np.ndarray | None  # [titles, all authors], None when nothing is enrolled
    enrolled: np.ndarray  # [titles] 1.0 for enrolled titles
    stamp: tuple


class StyleFinder:
    """A bundle opened for queries: its runner, its title index and its labels.

    The model is opened once. The titles, their index and the author prototypes are reloaded
    when bundle.json changes (an enroll), between queries: each query reads one consistent
    snapshot, and a running web app picks up enrolled titles without a restart."""

    def __init__(self, bundle: Bundle | str | os.PathLike | None = None, backend: str = "auto",
                 index: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS, ranking: str = "exemplars"):
        if ranking not in RANKINGS:
            raise ValueError(f"unknown ranking {ranking!r}; choose from {', '.join(RANKINGS)}")
        bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle or DEMO_BUNDLE)
        if warning := bundle.resize_warning():
            log.warning("%s", warning)
        self.runner: ModelRunner = open_runner(bundle, backend)
        self.ranking = ranking
        self.index_kind = index
        self.max_pixels = max_pixels
        self._lock = threading.Lock()  # a LiteRT interpreter runs one call at a time
        self._text_finder = None
        self._text_lock = threading.Lock()
        self._catalog = self._open_catalog(bundle, _stamp(bundle.path))

    @property
    def bundle(self) -> Bundle:
        return self._catalog.bundle

    @property
    def index(self):
        return self._catalog.index

    @property
    def backend(self) -> str:
        return self.runner.backend

    def _open_catalog(self, bundle: Bundle, stamp: tuple) -> _Catalog:
        names = bundle.all_authors
        title_authors = np.array([names.index(t.author) if t.author in names else -1 for t in bundle.titles])
        matrix = title_author_matrix([t.author for t in bundle.titles], names) if bundle.enrolled else None
        graph = bundle.path / HNSW_GRAPH
        return _Catalog(bundle, build_index(bundle.title_embeddings, self.index_kind, graph), title_authors,
                        matrix, bundle.enrolled_mask, stamp)

    def refresh(self) -> bool:
        """Reload the titles if bundle.json changed since they were read; True if it did."""
        current = self._catalog
        stamp = _stamp(current.bundle.path)
        if stamp == current.stamp:
            return False
        for _ in range(3):  # an enroll may remove the index we were about to read: read again
            try:
                bundle = Bundle.load(current.bundle.path)
                break
            except BundleError:
                stamp = _stamp(current.bundle.path)
        else:
            return False  # keep answering from the snapshot we have
        if bundle.image_size != current.bundle.image_size:
            raise BundleError(f"{bundle.path}: image size changed under a running finder")
        self._catalog = self._open_catalog(bundle, stamp)
        return True

    def query(self, images: list[ImageInput], k: int = 10, mode: str = "embedding",
              names: list[str] | None = None, synopsis: str | None = None,
              explain: bool = False) -> list[SimilarityResult]:
        """One result per image; an unreadable image raises ImageError naming it. With a `synopsis`
        (the images' title's text; "" for none) each result also has the text's genres; with
        `explain`, its style map and mixed styles."""
        size = self._catalog.bundle.image_size
        if explain:  # decoded once: the whole image and its windows come from the same pixels
            images = [image if isinstance(image, Image.Image) else load_image(image, self.max_pixels)
                      for image in images]
        pixels = np.stack([load_resized(image, size, self.max_pixels) for image in images])
        names = names or [_name(image) for image in images]
        outputs = self.encode(pixels)
        results = self.answer(outputs, names, k, mode, synopsis)
        if not explain:
            return results
        return [self.explain(result, image, outputs["embedding"][i])
                for i, (image, result) in enumerate(zip(images, results, strict=True))]

    def explain(self, result: SimilarityResult, image: Image.Image,
                embedding: np.ndarray | None = None) -> SimilarityResult:
        """`result` with the style map and the mixed styles of its image (the picture itself);
        `embedding`: the whole image's, when the caller has run it already."""
        names = self.bundle.all_authors
        first = [names.index(a.name) for a in result.authors if a.name in names]
        found = self.style_map(image, first, embedding)
        return replace(result, style_map=found.to_dict(), mixed=list(found.mixed))

    def style_map(self, image: Image.Image, first: list[int] | None = None,
                  embedding: np.ndarray | None = None):
        """Where each author's style is in `image` (an RGB picture): inference/style_map.py. The
        whole image is run too (windows that vote must look as typical as it) unless its
        `embedding` is given."""
        from inference.style_map import build_style_map, window_layout, window_pixels

        catalog = self._catalog
        bundle = catalog.bundle
        if not bundle.authors:
            raise BundleError(f"{bundle.path}: this bundle has no author head to map")
        layout = window_layout(*image.size)
        pixels = window_pixels(image, layout, bundle.image_size)
        whole = None
        if embedding is None:  # the whole image first, in the same batch
            pixels = np.concatenate([load_resized(image, bundle.image_size, self.max_pixels)[None], pixels])
        outputs = self.encode(pixels)
        if embedding is None:
            whole = {key: value[0] for key, value in outputs.items()}
            embedding = whole["embedding"]
            outputs = {key: value[1:] for key, value in outputs.items()}
        windows = np.stack([
            self.author_probabilities(catalog, {key: value[i] for key, value in outputs.items()})
            for i in range(len(layout.windows))
        ])
        both = unit_rows(np.concatenate([embedding[None], outputs["embedding"]]))
        votes = None
        if len(bundle.title_embeddings):
            votes = voting_windows((both @ bundle.title_embeddings.T).max(axis=1))
        if first is None and whole is not None:  # the whole image's likeliest authors, listed first
            likeliest = np.argsort(-self.author_probabilities(catalog, whole), kind="stable")
            first = [int(a) for a in likeliest[:3]]
        return build_style_map(layout, windows, bundle.all_authors, first, votes, both[1:])

    @property
    def has_text_model(self) -> bool:
        from inference.text_genres import has_text_model

        return has_text_model(self.bundle.path)

    @property
    def text_finder(self):
        """The bundle's text genre model, opened on first use; BundleError when it has none."""
        with self._text_lock:  # the web app's threads open it once
            if self._text_finder is None:
                from inference.text_genres import TextGenreFinder, has_text_model

                if not has_text_model(self.bundle.path):
                    raise BundleError(f"{self.bundle.path}: this bundle has no text genre model (add one "
                                      "with python -m training.train_text ... --bundle BUNDLE)")
                self._text_finder = TextGenreFinder(self.bundle.path)
            return self._text_finder

    def answer(self, outputs: dict[str, np.ndarray], names: list[str], k: int = 10, mode: str = "embedding",
               synopsis: str | None = None) -> list[SimilarityResult]:
        """Results from the model's outputs for `names` (one row each), e.g. read from a feature store."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose from {', '.join(MODES)}")
        catalog = self._catalog  # one snapshot for the whole query
        if mode == "author" and not catalog.bundle.all_authors:
            raise BundleError(f"{catalog.bundle.path}: this bundle has no author head; use --mode embedding")
        if not k >= 1:
            raise ValueError(f"k must be at least 1, got {k}")
        results = [self._result(catalog, names[i], {key: value[i] for key, value in outputs.items()}, k, mode)
                   for i in range(len(names))]
        if synopsis is None:
            return results
        from inference.text_genres import synopsis_answer

        bundle = catalog.bundle
        with_text = []
        for i, result in enumerate(results):
            image = ({g: (float(p), float(t)) for g, p, t in zip(bundle.genres, outputs["genres"][i],
                                                                 bundle.genre_thresholds, strict=True)}
                     if "genres" in outputs and bundle.genres else {})
            with_text.append(replace(result, synopsis=synopsis_answer(self.text_finder, synopsis, image)))
        return with_text

    def encode(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 [n, H, W, 3] at the bundle's size -> the model's outputs."""
        with self._lock:
            return self.runner(pixels.astype(np.float32) / 255.0)

    @staticmethod
    def exemplar_vectors(bundle: Bundle, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """A batch of model outputs in the space of the bundle's title exemplars."""
        exemplars = bundle.title_exemplars
        if exemplars.output not in outputs:
            raise BundleError(f"{bundle.path}: the model has no {exemplars.output!r} output (exemplars)")
        return exemplars.project(outputs[exemplars.output])

    def _exemplar_scores(self, bundle: Bundle, output: dict[str, np.ndarray]) -> np.ndarray:
        """[titles] one image's title scores by nearest exemplars; kept on the output dict, so that
        naming authors and ranking titles search the exemplars once per image."""
        if "_exemplar_scores" not in output:
            vector = self.exemplar_vectors(bundle, {key: value[None] for key, value in output.items()})
            output["_exemplar_scores"] = bundle.title_exemplars.scores(vector, len(bundle.titles))[0]
        return output["_exemplar_scores"]

    def author_probabilities(self, catalog: _Catalog, output: dict[str, np.ndarray]) -> np.ndarray | None:
        """Over bundle.all_authors: the head's, combined with the nearest-title classifier's for
        enrolled authors (inference/author_prototypes.py)."""
        bundle = catalog.bundle
        if "author" not in output or not bundle.authors:
            return None
        head = output["author"]
        if catalog.title_to_author is None:
            return head
        scores = self._exemplar_scores(bundle, output)[None]
        temperature = bundle.prototype_temperature or DEFAULT_PROTOTYPE_TEMPERATURE
        by_title = title_probabilities(scores, temperature, bundle.enrolled_bias, catalog.enrolled)
        return combine(head[None], by_title, catalog.title_to_author, catalog.enrolled)[0]

    def _result(self, catalog: _Catalog, name: str, output: dict[str, np.ndarray], k: int,
                mode: str) -> SimilarityResult:
        bundle = catalog.bundle
        embedding = unit_rows(output["embedding"])
        authors: tuple[AuthorGuess, ...] = ()
        probabilities = self.author_probabilities(catalog, output)
        if probabilities is not None:
            names = bundle.all_authors
            prior = bundle.author_prior + [0.0] * len(bundle.enrolled_authors)
            top = np.argsort(-probabilities, kind="stable")[:TOP_AUTHORS]
            authors = tuple(AuthorGuess(names[i], float(probabilities[i]), prior[i]) for i in top)
        genres: tuple[GenreGuess, ...] = ()
        if "genres" in output and bundle.genres:
            scores = output["genres"]
            thresholds = bundle.genre_thresholds
            chosen = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= thresholds[i]]
            genres = tuple(GenreGuess(bundle.genres[i], float(scores[i]), bundle.genre_thresholds[i])
                           for i in chosen)
        if mode == "author":
            rows, scores, similarities = self._by_author(catalog, probabilities, embedding, k)
        elif self.ranking == "exemplars":
            rows, scores, similarities = self._by_exemplars(catalog, output, embedding, k)
        else:
            found_rows, found_scores = catalog.index.search(embedding[None], k)
            rows, scores, similarities = found_rows[0], found_scores[0], found_scores[0]
        titles = tuple(self._title(bundle, rank + 1, int(row), float(score), float(similarity))
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

    def _by_exemplars(self, catalog: _Catalog, output: dict[str, np.ndarray], embedding: np.ndarray, k: int):
        """Titles by `exemplar_ranking` of one image."""
        bundle = catalog.bundle
        similarity = bundle.title_embeddings @ embedding
        score = exemplar_ranking(self._exemplar_scores(bundle, output), similarity)
        k = min(k, len(score))
        top = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
        order = top[np.argsort(-score[top], kind="stable")]
        return order, score[order], similarity[order]

    @staticmethod
    def _by_author(catalog: _Catalog, probabilities: np.ndarray, embedding: np.ndarray, k: int):
        """The webtoon study's ranking: titles of the likeliest authors, by that author's probability,
        then by similarity within an author."""
        similarity = catalog.bundle.title_embeddings @ embedding
        author_probability = np.where(catalog.title_authors >= 0, probabilities[catalog.title_authors], 0.0)
        order = np.lexsort((-similarity, -author_probability))[:k]
        return order, author_probability[order], similarity[order]

    @staticmethod
    def _title(bundle: Bundle, rank: int, row: int, score: float, similarity: float) -> SimilarTitle:
        entry = bundle.titles[row]
        thumbnail = str(bundle.path.resolve() / entry.thumbnails[0]) if entry.thumbnails else None
        return SimilarTitle(rank, entry.name, entry.author, score, similarity, thumbnail, entry.genres)


    def document(self, results: list[SimilarityResult], errors: list[str]) -> dict:
        """The JSON document of `python -m inference.similar --json` and of the web API."""
        return {"bundle": {"path": str(self.bundle.path.resolve()), "name": self.bundle.name,
                           "version": self.bundle.version},
                "backend": self.backend, "index": self.index.kind, "ranking": self.ranking,
                "results": [r.to_dict() for r in results], "errors": errors}


def exemplar_ranking(exemplar_scores: np.ndarray, mean_similarity: np.ndarray) -> np.ndarray:
    """Title scores of embedding mode: by their nearest exemplars (a title of several clusters is
    near an image of any of them, where its mean sits between them), with a tenth of the title
    mean's similarity: enrolled titles' hit@1 0.48 -> 0.82 on the icon benchmark, trained titles
    within 0.01 (docs/benchmarks.md). The evaluation ranks by the same function."""
    return (1 - MEAN_WEIGHT) * exemplar_scores + MEAN_WEIGHT * mean_similarity


def _is_unknown(evidence: dict[str, float], thresholds: dict[str, float]) -> bool:
    """Unknown only when every calibrated signal is below its threshold (none calibrated: never)."""
    signals = [(evidence[key], thresholds[key]) for key in ("author_probability", "title_similarity")
               if key in thresholds and key in evidence]
    return bool(signals) and all(value < threshold for value, threshold in signals)


def _stamp(bundle_path: Path) -> tuple:
    try:
        info = (bundle_path / MANIFEST).stat()
    except OSError:
        return ()
    return info.st_mtime_ns, info.st_size, info.st_ino


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
    bundle.refresh()
    return bundle.query([image], k, mode)[0]
