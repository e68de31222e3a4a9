"""What a query answers: the authors, genres and titles guessed for one image (`find_similar`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


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
    # With a synopsis: the text's genres, the fused genres (or None) and a note (inference/text_genres.py).
    synopsis: dict | None = None
    # When explained (inference/style_map.py): where each author's style is, and [] or the mixed styles.
    style_map: dict | None = None
    mixed: list[dict] | None = None

    def to_dict(self) -> dict:
        return asdict(self)
