"""Genres from a synopsis, and fused with an image's: the query side of the text genre model.

`TextGenreFinder(path)` opens a text model folder, or the `text_genres/` folder of an image
bundle, once; `answer(text)` returns every genre at or over its threshold (tuned on
validation), or the `top_k` likeliest, with scores. Only numpy (and, for a model trained with
sentence features, the numpy-only sentence encoder): no TensorFlow, no scikit-learn.

An empty text or a site's placeholder ("No synopsis information has been added") is no text:
the answer carries no genres and a note saying so, and callers fall back to the image alone.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from datasets.texts import check_text, read_text_file
from models.text_genre_model import TEXT_MODEL_DIR, TextGenreModel, TextModelError

NO_TEXT_NOTE = "no usable synopsis (empty or a placeholder): genres from the image alone"


@dataclass(frozen=True)
class GenreScore:
    name: str
    probability: float
    threshold: float
    decided: bool  # probability >= threshold


@dataclass(frozen=True)
class TextAnswer:
    genres: tuple[GenreScore, ...]  # decided genres, likeliest first (or the top_k when asked)
    note: str | None = None  # why there are none, when there is no usable text

    def to_dict(self) -> dict:
        return asdict(self)


def synopsis_argument(value: str) -> str:
    """A --synopsis argument's text: `@FILE` read as UTF-8 (TextError names the file when it
    cannot be used; a placeholder reads as ""), anything else as given."""
    if value.startswith("@"):
        return read_text_file(value[1:]) or ""
    return value


def text_model_folder(path: str | os.PathLike) -> Path:
    """The text model in `path`: the folder itself, or its `text_genres/` (an image bundle)."""
    path = Path(path)
    return path / TEXT_MODEL_DIR if (path / TEXT_MODEL_DIR).is_dir() else path


def has_text_model(path: str | os.PathLike) -> bool:
    return (text_model_folder(path) / "text_model.json").is_file()


class TextGenreFinder:
    """A text model opened once, answering any number of texts."""

    def __init__(self, path: str | os.PathLike):
        self.folder = text_model_folder(path)
        self.model = TextGenreModel.load(self.folder)
        self._encoder = None
        self._last: tuple[str, np.ndarray] | None = None  # a batch of images shares one synopsis

    @property
    def genres(self) -> list[str]:
        return self.model.genres

    def probabilities(self, texts: list[str]) -> np.ndarray:
        last = self._last
        if len(texts) == 1 and last is not None and last[0] == texts[0]:
            return last[1][None]
        features = None
        if self.model.sentence:
            if self._encoder is None:
                from models.sentence_encoder import SentenceEncoder, encoder_identity

                if encoder_identity() != self.model.sentence["encoder"]:
                    raise TextModelError(
                        f"{self.folder}: trained with {self.model.sentence['encoder']}, "
                        f"but {encoder_identity()} is installed"
                    )
                self._encoder = SentenceEncoder()
            features = self._encoder.encode(texts)
        scores = self.model.probabilities(texts, features)
        if len(texts) == 1:
            self._last = (texts[0], scores[0])
        return scores

    def answer(self, text: str | None, top_k: int | None = None, origin: str = "synopsis") -> TextAnswer:
        """Genres of one text. TextError (one line naming `origin`) for binary or over-long text."""
        cleaned = check_text(text or "", origin)
        if not cleaned:
            return TextAnswer((), NO_TEXT_NOTE)
        scores = self.probabilities([cleaned])[0]
        return TextAnswer(rank_genres(self.genres, scores, self.model.thresholds, top_k))


def rank_genres(
    names: list[str], scores: np.ndarray, thresholds: np.ndarray, top_k: int | None = None
) -> tuple[GenreScore, ...]:
    """Genres at or over their thresholds, likeliest first; with `top_k`, the k likeliest whatever
    their thresholds (each still says whether it was decided)."""
    order = np.argsort(-scores, kind="stable")
    chosen = order[:top_k] if top_k else [j for j in order if scores[j] >= thresholds[j]]
    return tuple(
        GenreScore(
            names[j],
            round(float(scores[j]), 4),
            round(float(thresholds[j]), 4),
            bool(scores[j] >= thresholds[j]),
        )
        for j in chosen
    )


def fusion_settings(model: TextGenreModel) -> dict | None:
    """The late-fusion weight chosen on validation and recorded with the text model, or None
    (fusion off: validation showed no gain, or had no titles with both an image and a text)."""
    fusion = model.info.get("fusion")
    return fusion if fusion and fusion.get("enabled") else None


def fuse(
    image: dict[str, tuple[float, float]], text: dict[str, tuple[float, float]], text_weight: float
) -> dict[str, tuple[float, float]]:
    """Late fusion of {genre: (probability, threshold)} from the image and the text: a weighted
    mean of probabilities and of thresholds where both modalities know the genre, the one
    modality's own where only one does."""
    fused = {}
    for name in sorted(set(image) | set(text)):
        if name in image and name in text:
            (p_i, t_i), (p_t, t_t) = image[name], text[name]
            fused[name] = (
                (1 - text_weight) * p_i + text_weight * p_t,
                (1 - text_weight) * t_i + text_weight * t_t,
            )
        else:
            fused[name] = image.get(name) or text[name]
    return fused


def synopsis_answer(
    finder: TextGenreFinder, text: str | None, image: dict[str, tuple[float, float]], origin: str = "synopsis"
) -> dict:
    """What a query with a synopsis adds to an image's result: the text's genres, and the fused
    ones when the model records a fusion weight (else a note that fusion is off, and why).
    `image` is {genre: (probability, threshold)} of the image's genre head ({} without one)."""
    cleaned = check_text(text or "", origin)
    if not cleaned:
        return {"text_genres": [], "fused_genres": None, "note": NO_TEXT_NOTE}
    scores = finder.probabilities([cleaned])[0]
    thresholds = finder.model.thresholds
    out = {
        "text_genres": [asdict(g) for g in rank_genres(finder.genres, scores, thresholds)],
        "fused_genres": None,
        "note": None,
    }
    fusion = fusion_settings(finder.model)
    if fusion is None or not image:
        out["note"] = (
            "fusion off: "
            + (
                "the image model has no genre head"
                if not image
                else "no fusion weight with a validation gain is recorded for this bundle"
            )
            + "; image and text genres are shown apart"
        )
        return out
    text_scores = {name: (float(scores[j]), float(thresholds[j])) for j, name in enumerate(finder.genres)}
    fused = fuse(image, text_scores, float(fusion["text_weight"]))
    names = list(fused)
    out["fused_genres"] = [
        asdict(g)
        for g in rank_genres(
            names, np.array([fused[n][0] for n in names]), np.array([fused[n][1] for n in names])
        )
    ]
    out["fusion"] = {"text_weight": float(fusion["text_weight"])}
    return out
