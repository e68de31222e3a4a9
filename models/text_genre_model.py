"""The exported text genre model: TF-IDF blocks (+ optional sentence features) and a linear layer.

A folder, like the image bundle, that the query path reads with numpy alone:
- `text_model.json`: genres, blocks (analyzer, n-gram range), thresholds, prior, metrics and the
  resolved training config;
- `text_model.npz`: the weights [features, genres] (float16), bias, and each block's terms and idf.

It sits inside an image bundle as `<bundle>/text_genres/`, or alone.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.text_features import TfidfBlock

TEXT_MODEL_DIR = "text_genres"  # its folder inside an image bundle
CONFIG_NAME = "text_model.json"
ARRAYS_NAME = "text_model.npz"
FORMAT = 1


class TextModelError(ValueError):
    """A text model folder that cannot be used; str() is one line naming the file."""


@dataclass
class TextGenreModel:
    genres: list[str]
    blocks: list[TfidfBlock]
    weights: np.ndarray  # [features, genres] (float16 once saved): TF-IDF columns, then sentence dims
    bias: np.ndarray  # float32 [genres]
    thresholds: np.ndarray  # float32 [genres]: decide "has this genre" at probability >= threshold
    prior: np.ndarray  # float32 [genres]: training frequency, the trivial baseline
    sentence: dict | None = None  # {"encoder": identity, "dims": 512, "scale": s} when used
    info: dict = field(default_factory=dict)  # metrics, config, data: written, never read for answers

    @property
    def tfidf_size(self) -> int:
        return sum(block.size for block in self.blocks)

    def logits(self, texts: list[str], sentence_features: np.ndarray | None = None) -> np.ndarray:
        """Decision values [n, genres]. `sentence_features` [n, dims] are required when the model
        was trained with them (the caller encodes, so that it can cache)."""
        out = np.tile(self.bias, (len(texts), 1)).astype(np.float32)
        for row, text in enumerate(texts):
            offset = 0
            for block in self.blocks:
                columns, values = block.features(text)
                if len(columns):
                    out[row] += values @ self.weights[columns + offset].astype(np.float32)
                offset += block.size
        if self.sentence:
            if sentence_features is None or sentence_features.shape != (len(texts), self.sentence["dims"]):
                raise ValueError(
                    "this text model needs sentence features "
                    f"[{len(texts)}, {self.sentence['dims']}] from {self.sentence['encoder']}"
                )
            dense = self.weights[self.tfidf_size :].astype(np.float32)
            out += (sentence_features * self.sentence["scale"]) @ dense
        return out

    def probabilities(self, texts: list[str], sentence_features: np.ndarray | None = None) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits(texts, sentence_features)))

    # -- the folder --------------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> Path:
        """Write the model into a new folder beside `folder`, then swap the folders: a kill at any
        moment leaves the old model or the new one (a swap cut short is repaired on the next
        save or load), never the files of both."""
        folder = Path(folder)
        _repair_swap(folder)
        new = folder.with_name(f".{folder.name}.new")
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir(parents=True)
        arrays = {
            "weights": self.weights.astype(np.float16),
            "bias": self.bias.astype(np.float32),
            "thresholds": self.thresholds.astype(np.float32),
            "prior": self.prior.astype(np.float32),
        }
        for i, block in enumerate(self.blocks):
            arrays[f"terms_{i}"] = block.terms
            arrays[f"idf_{i}"] = block.idf.astype(np.float32)
        config = {
            "format": FORMAT,
            "genres": self.genres,
            "sentence": self.sentence,
            "blocks": [{"analyzer": b.analyzer, "ngram_range": list(b.ngram_range)} for b in self.blocks],
            **self.info,
        }
        _write_synced(new / ARRAYS_NAME, lambda handle: np.savez(handle, **arrays))
        _write_synced(
            new / CONFIG_NAME,
            lambda handle: handle.write(json.dumps(config, indent=1, ensure_ascii=False).encode()),
        )
        old = folder.with_name(f".{folder.name}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(new, folder)
        shutil.rmtree(old, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> TextGenreModel:
        folder = Path(folder)
        _repair_swap(folder)
        config_path, arrays_path = folder / CONFIG_NAME, folder / ARRAYS_NAME
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TextModelError(f"{folder}: not a text genre model (no {CONFIG_NAME})") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise TextModelError(f"{config_path}: unreadable ({str(err).splitlines()[0]})") from None
        if config.get("format") != FORMAT:
            raise TextModelError(
                f"{config_path}: format {config.get('format')!r}, this version reads {FORMAT}"
            )
        try:
            with np.load(arrays_path, allow_pickle=False) as arrays:
                blocks = [
                    TfidfBlock(
                        spec["analyzer"], tuple(spec["ngram_range"]), arrays[f"terms_{i}"], arrays[f"idf_{i}"]
                    )
                    for i, spec in enumerate(config["blocks"])
                ]
                weights = arrays["weights"]  # float16, as stored: rows are cast when a text uses them
                model = cls(
                    list(config["genres"]),
                    blocks,
                    weights,
                    arrays["bias"],
                    arrays["thresholds"],
                    arrays["prior"],
                    config.get("sentence"),
                    {k: v for k, v in config.items() if k not in ("format", "genres", "sentence", "blocks")},
                )
        except FileNotFoundError:
            raise TextModelError(f"{arrays_path}: missing") from None
        except (OSError, ValueError, KeyError, EOFError) as err:
            raise TextModelError(f"{arrays_path}: unreadable ({str(err).splitlines()[0]})") from None
        expected = model.tfidf_size + (model.sentence["dims"] if model.sentence else 0)
        if weights.shape != (expected, len(model.genres)):
            raise TextModelError(
                f"{arrays_path}: weights {weights.shape}, expected {(expected, len(model.genres))}"
            )
        return model


def _repair_swap(folder: Path) -> None:
    """After a kill between the two renames of a save: the old model back if the new one never
    arrived, else the old one gone."""
    old = folder.with_name(f".{folder.name}.old")
    if old.exists():
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, folder)


def _write_synced(target: Path, write) -> None:
    with open(target, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
