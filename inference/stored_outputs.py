"""A bundle's outputs for image files, through the feature store: each image is run once per model.

`inference.enroll`, `inference.similar` and `inference.report` take `--store DIR` (the store
training fills, `datasets/features/`).

- A two-stage bundle (a run on frozen features: the store's encoder and the heads apart) reads
  its encoder's rows, the very rows training stored: a catalog trained on is not run through
  the network again for any bundle of that backbone, and the heads run on the rows as they are
  read (a small network: about a millisecond an image).
- A bundle of one model file is an encoder of that store like any other: its key is a digest of
  the model file, the input size and the outputs it gives, so a re-exported bundle is a new
  encoder and a re-enrolled or re-queried catalog is not run again. Its rows are every output
  the queries read (embedding, descriptor, author, genre scores), side by side in float32
  (genre scores meet thresholds: float16 would move some across them).

Images are taken in chunks, so memory stays bounded whatever their number.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from datasets.features.digests import content_digests, file_sha256
from datasets.features.encoders import EncoderSpec, encoder_key
from datasets.features.engines import encode_missing
from datasets.features.store import FeatureStore, StoreError
from datasets.images import ImageError, load_image, resize_fingerprint
from inference.query import StyleFinder
from inference.two_stage_model import TwoStageModel

log = logging.getLogger(__name__)

CHUNK = 4096  # images looked up, encoded and answered at a time: ~13 MB of outputs at 800 floats
STATISTICS_CHUNK = 1024  # the same through a two-stage bundle: 44 MB of the default's raw statistics
HEADS_BATCH = 256  # stored statistics through a two-stage bundle's heads at a time


class StoredOutputs:
    """The outputs of `finder`'s model for image files, read from the store at `root` and encoded
    (locally, with the bundle's own runner) where the store lacks them."""

    def __init__(self, finder: StyleFinder, root: str | os.PathLike, progress: bool = True):
        self.finder = finder
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a file, or a folder that cannot be made: one line, nothing written
            raise StoreError(f"{root}: cannot be used as a feature store ({err.strerror or err})") from None
        self.store = FeatureStore(root)
        self.progress = progress
        bundle = finder.bundle
        size = tuple(bundle.image_size)
        probe = finder.encode(np.zeros((1, *size, 3), np.uint8))
        self.names = sorted(probe)
        self.widths = [int(probe[name].shape[-1]) for name in self.names]
        # A two-stage bundle's rows are its encoder's, the very rows training stores: the heads
        # run on them as they are read.
        network = getattr(finder.runner, "model", None)
        self.two_stage = network if isinstance(network, TwoStageModel) else None  # LiteRT runners only
        if self.two_stage:
            self.spec = self.two_stage.spec.registered_in(self.store.root)
            return
        model = bundle.tflite_path if finder.backend == "litert" else bundle.keras_path
        parts = list(zip(self.names, self.widths, strict=True))
        identity = {"kind": "bundle-outputs", "model_sha256": file_sha256(model), "backend": finder.backend,
                    "size": list(size), "outputs": [[n, w] for n, w in parts], "dtype": "float32",
                    "resize": resize_fingerprint(size)}
        layout = tuple({"name": n, "kind": "output", "width": w} for n, w in parts)
        self.spec = EncoderSpec(encoder_key(identity), identity, size, sum(self.widths), layout,
                                self.store.root, "float32")
        if not self.spec.json_path.is_file():
            self.spec.save()

    def close(self) -> None:
        self.store.close()

    def _encode(self, pixels: np.ndarray) -> np.ndarray:
        outputs = self.finder.encode(pixels)
        return np.concatenate([np.asarray(outputs[n], np.float32).reshape(len(pixels), -1)
                               for n in self.names], axis=1)

    def outputs(self, paths: Sequence[str | os.PathLike]) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """For each path: its outputs ({name: [n, width]}, zeros where unreadable) and None, or the
        one-line reason it could not be read."""
        digests = content_digests(self.store, paths, progress=False)
        encoder = None if self.two_stage else self._encode  # None: the store's encoder, the spec's own file
        encode_missing(self.store, self.spec, digests, paths, progress=self.progress, encoder=encoder)
        rows = np.zeros((len(paths), self.spec.dim), np.float32)
        found, usable, _, _ = self.store.gather(self.spec.key, digests, rows)
        lost = [i for i in np.flatnonzero(~found) if digests[i] is not None]
        if lost:  # a shard found broken while reading was dropped: encode its images again
            lost_digests, lost_paths = [digests[i] for i in lost], [paths[i] for i in lost]
            encode_missing(self.store, self.spec, lost_digests, lost_paths, progress=False, encoder=encoder)
            again = np.zeros((len(lost), self.spec.dim), np.float32)
            found_again, usable_again, _, _ = self.store.gather(self.spec.key, lost_digests, again)
            rows[lost], found[lost], usable[lost] = again, found_again, usable_again
        problems: list[str | None] = [None] * len(paths)
        for i in np.flatnonzero(~(found & usable)):
            problems[i] = _problem(paths[i])
        if self.two_stage:
            return self._heads(rows), problems
        parts = np.split(rows, np.cumsum(self.widths)[:-1], axis=1)
        return dict(zip(self.names, parts, strict=True)), problems

    def _heads(self, statistics: np.ndarray) -> dict[str, np.ndarray]:
        """The two-stage bundle's heads over stored statistics, a batch at a time."""
        out = {name: np.zeros((len(statistics), width), np.float32)
               for name, width in zip(self.names, self.widths, strict=True)}
        for start in range(0, len(statistics), HEADS_BATCH):
            answered = self.two_stage.heads(statistics[start:start + HEADS_BATCH])
            for name in self.names:
                out[name][start:start + HEADS_BATCH] = answered[name]
        return out

    def chunks(self, paths: Sequence[str | os.PathLike], size: int | None = None
               ) -> Iterator[tuple[int, dict[str, np.ndarray], list[str | None]]]:
        """`outputs` a chunk of paths at a time: (first position, outputs, problems)."""
        size = size or (STATISTICS_CHUNK if self.two_stage else CHUNK)
        for start in range(0, len(paths), size):
            outputs, problems = self.outputs(paths[start:start + size])
            yield start, outputs, problems


def _problem(path: str | os.PathLike) -> str:
    """Why an image the store could not use cannot be read, named by this path."""
    try:
        load_image(path)
    except ImageError as err:
        return str(err)
    return f"{path}: could not be decoded (the feature store's record of these bytes)"
