"""Evaluation figures, each beside its trivial baseline (the label prior)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, precision_score, recall_score


def author_metrics(probabilities: np.ndarray, truth: np.ndarray, prior: np.ndarray) -> dict[str, float]:
    """Top-1, top-3 and macro-F1 of author predictions, and the same for always guessing the prior."""
    ranked = np.argsort(-probabilities, axis=1)
    prior_ranked = np.argsort(-prior, kind="stable")
    prior_guess = np.full(len(truth), prior_ranked[0])
    labels = np.arange(probabilities.shape[1])
    return {
        "author_top1": float(np.mean(ranked[:, 0] == truth)),
        "author_top3": float(np.mean((ranked[:, :3] == truth[:, None]).any(axis=1))),
        "author_macro_f1": float(f1_score(truth, ranked[:, 0], labels=labels, average="macro",
                                          zero_division=0)),
        "prior_author_top1": float(np.mean(prior_guess == truth)),
        "prior_author_top3": float(np.mean(np.isin(truth, prior_ranked[:3]))),
        "prior_author_macro_f1": float(f1_score(truth, prior_guess, labels=labels, average="macro",
                                                zero_division=0)),
        "author_images": len(truth),
    }


def genre_metrics(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray, prior: np.ndarray,
                  names: Sequence[str]) -> dict:
    """Micro, macro and weighted F1, mAP and per-label precision/recall; the prior predicts each
    genre for every image when its training share is at least one half."""
    predicted = scores >= thresholds[None, :]
    prior_predicted = np.repeat((prior >= 0.5)[None, :], len(truth), axis=0)
    present = truth.sum(axis=0) > 0
    out = {}
    for tag, guess in (("genre", predicted), ("prior_genre", prior_predicted)):
        for average in ("micro", "macro", "weighted"):
            out[f"{tag}_{average}_f1"] = float(f1_score(truth, guess, average=average, zero_division=0))
    out["genre_map"] = float(average_precision_score(
        truth[:, present], scores[:, present], average="macro")) \
        if present.any() else 0.0
    out["prior_genre_map"] = float(average_precision_score(
        truth[:, present], np.repeat(prior[None, present], len(truth), axis=0), average="macro")) \
        if present.any() else 0.0
    out["genre_per_label"] = {
        name: {"precision": float(p), "recall": float(r), "support": int(s), "threshold": float(t)}
        for name, p, r, s, t in zip(
            names, precision_score(truth, predicted, average=None, zero_division=0),
            recall_score(truth, predicted, average=None, zero_division=0), truth.sum(axis=0), thresholds,
            strict=True)}
    return out


def ranking_metrics(similarity: np.ndarray, truth: Sequence[Sequence[int]], prefix: str) -> dict[str, float]:
    """hit@1, hit@10 and MRR where row i's relevant items are truth[i] (the best-ranked one counts)."""
    order = np.argsort(-similarity, axis=1)
    ranks = []
    for row, relevant in zip(order, truth, strict=True):
        positions = np.flatnonzero(np.isin(row, list(relevant)))
        ranks.append(positions[0] + 1 if len(positions) else np.inf)
    ranks = np.array(ranks, dtype=float)
    return {f"{prefix}_hit1": float(np.mean(ranks <= 1)), f"{prefix}_hit10": float(np.mean(ranks <= 10)),
            f"{prefix}_mrr": float(np.mean(1.0 / ranks))}


def tune_thresholds(scores: np.ndarray, truth: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per genre, the threshold with the best F1 on validation; `default` where it has no positives."""
    grid = np.linspace(0.05, 0.95, 19)
    chosen = np.full(scores.shape[1], default)
    decided = scores[:, None, :] >= grid[None, :, None]  # [items, thresholds, genres]
    positive = truth.astype(bool)[:, None, :]
    hits = (decided & positive).sum(axis=0)
    f1 = 2 * hits / np.maximum(decided.sum(axis=0) + positive.sum(axis=0), 1)  # [thresholds, genres]
    has = truth.sum(axis=0) > 0
    chosen[has] = grid[np.argmax(f1[:, has], axis=0)]
    return chosen


def plot_confusion(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str], out: Path) -> Path:
    from matplotlib.figure import Figure

    matrix = confusion_matrix(truth, predicted, labels=np.arange(len(names)))
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = max(5.0, 0.35 * len(names) + 2)
    fig = Figure(figsize=(side, side), layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), [n[:20] for n in names], rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)), [n[:20] for n in names], fontsize=7)
    ax.set_xlabel("predicted author")
    ax.set_ylabel("true author")
    ax.set_title("author confusion (row-normalised)")
    for i in range(len(names)):
        for j in range(len(names)):
            if matrix[i, j]:
                ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 0.5 else "black")
    fig.savefig(out, dpi=100)
    return out


def multilabel_figures(scores: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | None = None
                       ) -> dict[str, float]:
    """macro and micro mAP, P@1 (the top genre is a true one), and micro/macro F1 at `thresholds`
    (per genre, on the scores' scale). Genres absent from `truth` are left out of the macro mean."""
    present = truth.sum(axis=0) > 0
    out = {
        "macro_map": float(average_precision_score(truth[:, present], scores[:, present], average="macro"))
        if present.any() else 0.0,
        "micro_map": float(average_precision_score(truth, scores, average="micro")) if truth.any() else 0.0,
        "p_at_1": float(np.mean(truth[np.arange(len(truth)), np.argmax(scores, axis=1)]))
        if len(truth) else 0.0,
    }
    if thresholds is not None:
        predicted = scores >= thresholds[None, :]
        out["micro_f1"] = float(f1_score(truth, predicted, average="micro", zero_division=0))
        out["macro_f1"] = float(f1_score(truth[:, present], predicted[:, present], average="macro",
                                         zero_division=0))
    return out


def prior_collapse(scores: np.ndarray, prior: np.ndarray, k: int = 3) -> float:
    """Share of items whose top-k genres (as a set) are the prior's top-k: a model that only
    reproduces the genre distribution scores 1.0. With k or fewer genres every top-k is the
    same set, so k is capped at one fewer than the genres."""
    k = max(1, min(k, len(prior) - 1))
    prior_top = set(np.argsort(-prior, kind="stable")[:k].tolist())
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean([set(row.tolist()) == prior_top for row in top])) if len(top) else 0.0
