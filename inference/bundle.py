"""The model bundle: a folder that training writes and inference reads.

    bundle/
      bundle.json        names, labels, thresholds, image size, priors, titles, enrolled titles
      title_index.npz    unit-length mean embedding of each title's images, and its images'
                         exemplars (inference/title_exemplars.py); after an enroll,
                         title_index-<digest>.npz, the file bundle.json names
      thumbs/            3-5 small PNG thumbnails per title
      model.keras        the trained Keras model
      model.tflite       the same network for LiteRT (author, genres, embedding); or, from a
                         run on frozen features, two stages in its place:
      encoders/<key>.*   the feature store's encoder (images -> raw style statistics), as the
                         store keeps it (datasets/features/encoders.py)
      heads.tflite       the heads (raw statistics -> author, genres, embedding)
      config.yaml        the resolved training config
      metrics.json       evaluation with baselines
      MODEL_CARD.md

This module reads and writes the JSON and numpy parts only, so the query path
never needs TensorFlow.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from datasets.features.encoders import EncoderSpec
from datasets.features.store import StoreError
from datasets.images import resizes_otherwise
from inference.bundle_schema import check_manifest
from inference.title_exemplars import TitleExemplars

BUNDLE_FORMAT = 1
MANIFEST = "bundle.json"
INDEX = "title_index.npz"
KERAS_MODEL = "model.keras"
TFLITE_MODEL = "model.tflite"
ENCODERS = "encoders"  # a two-stage bundle's encoder, laid out as in a feature store
HEADS_MODEL = "heads.tflite"
THUMBNAILS_PER_TITLE = 4
THUMBNAIL_SIDE = 128


class BundleError(ValueError):
    """A bundle that cannot be used; str() is one line naming the folder."""


@dataclass(frozen=True)
class TitleEntry:
    name: str
    author: str | None
    genres: tuple[str, ...]
    thumbnails: tuple[str, ...]  # relative to the bundle folder
    images: int  # training images behind the mean embedding


@dataclass(frozen=True)
class EnrolledTitle:
    """A title added or updated by `inference.enroll`, without retraining."""
    title: str
    author: str | None
    source: str
    date: str  # ISO 8601, UTC
    images: int


@dataclass
class Bundle:
    path: Path
    name: str
    version: str
    image_size: tuple[int, int]  # height, width
    label_kind: str
    authors: list[str]
    genres: list[str]
    genre_thresholds: list[float]
    author_prior: list[float]  # training share of each author: the trivial baseline
    titles: list[TitleEntry]
    title_embeddings: np.ndarray  # float32 [titles, dim], unit rows
    open_set: dict[str, float] = field(default_factory=dict)
    format: int = BUNDLE_FORMAT
    # Authors added by enrolling, after the head's `authors` (named by their prototype only).
    enrolled_authors: list[str] = field(default_factory=list)
    enrolled: list[EnrolledTitle] = field(default_factory=list)
    # The nearest-title classifier's softmax temperature and enrolled titles' bias, fitted
    # leave-one-out (inference/author_prototypes.py); temperature 0: not calibrated.
    prototype_temperature: float = 0.0
    enrolled_bias: float = 0.0
    title_index: str = INDEX  # the title index file, written before bundle.json names it
    # Catalog file (resolved path) -> the highest image id `enroll --catalog C --new` took from it.
    catalog_marks: dict[str, int] = field(default_factory=dict)
    # The resize that made the model's inputs at export (`datasets.images.resize_record`); empty for
    # bundles exported before it was recorded.
    resize: dict[str, str] = field(default_factory=dict)
    # Each title's images in the space where enrolled authors are named; None for bundles
    # exported before them (their title means stand in, see `title_exemplars`).
    exemplars: TitleExemplars | None = None

    @property
    def all_authors(self) -> list[str]:
        return self.authors + self.enrolled_authors

    @property
    def title_exemplars(self) -> TitleExemplars:
        if self.exemplars is not None:
            return self.exemplars
        return TitleExemplars.of_means(self.title_embeddings)

    @property
    def enrolled_mask(self) -> np.ndarray:
        """[titles] 1.0 where a title was enrolled (added or updated without retraining)."""
        names = {e.title for e in self.enrolled}
        return np.array([t.name in names for t in self.titles], np.float32)

    @property
    def tflite_path(self) -> Path:
        return self.path / TFLITE_MODEL

    @property
    def keras_path(self) -> Path:
        return self.path / KERAS_MODEL

    @property
    def heads_path(self) -> Path:
        return self.path / HEADS_MODEL

    def has_litert(self) -> bool:
        """Whether LiteRT can run the bundle: one model.tflite, or an encoder and heads.tflite."""
        return self.tflite_path.is_file() or self.heads_path.is_file()

    def litert_files(self) -> list[Path]:
        """The LiteRT files a query runs, in order."""
        spec = self.encoder_spec()
        return [spec.tflite_path, self.heads_path] if spec else [self.tflite_path]

    def encoder_spec(self) -> EncoderSpec | None:
        """A two-stage bundle's encoder (encoders/<key>.json and .tflite); None for a bundle
        of one model.tflite."""
        if not self.heads_path.is_file():
            return None
        found = sorted((self.path / ENCODERS).glob("*.json"))
        if len(found) != 1:
            raise BundleError(f"{self.path / ENCODERS}: a bundle with {HEADS_MODEL} needs one encoder "
                              f"description, found {len(found)}")
        try:
            spec = EncoderSpec.load(self.path, found[0].stem)
        except StoreError as err:
            raise BundleError(str(err)) from None
        if not spec.tflite_path.is_file():
            raise BundleError(f"{spec.tflite_path}: missing (the encoder {found[0].name} describes)")
        return spec

    def resize_warning(self) -> str | None:
        """One line when this machine's Pillow resizes images otherwise than the one that exported
        the bundle (its model's input is Pillow's Lanczos; releases differ by a few grey levels on
        tall images); None when it resizes alike or the bundle recorded nothing."""
        if not resizes_otherwise(self.resize, self.image_size):
            return None
        import PIL

        made = self.resize.get("pillow")
        return (f"{self.path}: exported where Pillow {made} resized images otherwise than this machine's "
                f"Pillow {PIL.__version__}: answers may differ slightly from its figures (pillow=={made} "
                "gives its inputs)")

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        # Arrays and the exemplars (whose graph cannot be copied) are left out of the copy asdict makes.
        meta = asdict(replace(self, title_embeddings=None, exemplars=None))
        meta.pop("path")
        meta.pop("title_embeddings")
        meta.pop("exemplars")
        # The index first, then bundle.json, which names it: a reader sees one or the other whole.
        tmp = self.path / (self.title_index + ".tmp.npz")
        arrays = {"embeddings": self.title_embeddings.astype(np.float32)}
        if self.exemplars is not None:
            arrays.update(self.exemplars.arrays())
        np.savez(tmp, **arrays)
        os.replace(tmp, self.path / self.title_index)
        if self.exemplars is not None:  # an extended graph is saved before bundle.json names its exemplars
            self.exemplars.save_graph()
        _write_atomic(self.path / MANIFEST, json.dumps(meta, indent=2, ensure_ascii=False).encode())
        if self.exemplars is not None:
            self.exemplars.remove_stale_graphs()

    @classmethod
    def load(cls, path: str | os.PathLike) -> Bundle:
        path = Path(path)
        if not path.is_dir():
            raise BundleError(f"{path}: no such bundle folder")
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise BundleError(f"{path}: not a model bundle (no {MANIFEST})")
        try:
            meta = json.loads(manifest.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BundleError(f"{manifest}: unreadable ({err})") from None
        if isinstance(meta, dict) and meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{path}: bundle format {meta.get('format')}, this version of Stylefinder "
                              f"reads format {BUNDLE_FORMAT}")
        problem = check_manifest(meta, manifest)
        if problem:
            raise BundleError(problem)
        index_path = path / meta.get("title_index", INDEX)
        try:
            with np.load(index_path) as index:
                embeddings = index["embeddings"].astype(np.float32)
                exemplars = TitleExemplars.from_arrays(index) if "exemplars" in index.files else None
        except (OSError, KeyError, ValueError) as err:
            raise BundleError(f"{index_path}: unreadable title index ({err})") from None
        meta["titles"] = [TitleEntry(t["name"], t["author"], tuple(t["genres"]), tuple(t["thumbnails"]),
                                     t["images"]) for t in meta["titles"]]
        meta["enrolled"] = [EnrolledTitle(**e) for e in meta.get("enrolled", [])]
        meta["image_size"] = tuple(meta["image_size"])
        if embeddings.ndim != 2 or embeddings.shape[0] != len(meta["titles"]):
            raise BundleError(f"{path}: title index has {embeddings.shape[0]} rows for "
                              f"{len(meta['titles'])} titles")
        if exemplars is not None and not exemplars.fits(len(meta["titles"])):
            raise BundleError(f"{index_path}: exemplars that do not match its {len(meta['titles'])} titles")
        if exemplars is not None:  # a catalog-scale bundle keeps its exemplars' graph beside them
            exemplars = replace(exemplars, graph_dir=path)
        return cls(path=path, title_embeddings=embeddings, exemplars=exemplars, **meta)


def write_thumbnail(image_path: str | os.PathLike, target: Path) -> None:
    """A small PNG of an image for the bundle's thumbs/ (decoded as every image is)."""
    from datasets.images import load_image

    image = load_image(image_path)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    image.save(target)


def _write_atomic(target: Path, data: bytes) -> None:
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, target)
