"""Fit the text genre model: TF-IDF blocks (+ sentence features), a linear one-vs-rest layer,
per-genre thresholds on validation; evaluated beside the prior. Returns a `TextGenreModel`.

scikit-learn fits the vectorizers and the logistic regressions; what is exported is only their
numbers (terms, idf, weights), so the query path answers with numpy. The model's validation
scores are computed through that numpy path, so the thresholds are tuned on what ships.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from datasets.text_rows import TextRow
from models.sentence_encoder import DIMS, SentenceEncoder
from models.text_features import TfidfBlock
from models.text_genre_model import TextGenreModel
from training.metrics import multilabel_figures, prior_collapse, tune_thresholds
from training.text_config import TextModelConfig

log = logging.getLogger(__name__)


def label_matrix(rows: Sequence[TextRow], genres: Sequence[str]) -> np.ndarray:
    index = {g: i for i, g in enumerate(genres)}
    y = np.zeros((len(rows), len(genres)), np.int8)
    for i, row in enumerate(rows):
        for genre in row.genres:
            if genre in index:
                y[i, index[genre]] = 1
    return y


def _vectorizers(cfg: TextModelConfig):
    from sklearn.feature_extraction.text import TfidfVectorizer

    made = []
    if cfg.word_ngrams:
        made.append(
            TfidfVectorizer(
                sublinear_tf=True, min_df=cfg.min_df, ngram_range=(1, cfg.word_ngrams), dtype=np.float32
            )
        )
    if cfg.char_ngrams:
        made.append(
            TfidfVectorizer(
                sublinear_tf=True,
                min_df=cfg.min_df,
                analyzer="char_wb",
                ngram_range=tuple(cfg.char_ngrams),
                dtype=np.float32,
            )
        )
    return made


def _blocks(vectorizers) -> list[TfidfBlock]:
    # scikit-learn numbers its vocabulary in sorted order, as TfidfBlock needs
    return [TfidfBlock(vec.analyzer, tuple(vec.ngram_range), vec.get_feature_names_out(),
                       vec.idf_.astype(np.float32)) for vec in vectorizers]


def sentence_features(
    cfg: TextModelConfig, encoder: SentenceEncoder | None, texts: Sequence[str], progress: bool = False
) -> np.ndarray | None:
    if not cfg.sentence_scale:
        return None
    if encoder is None:
        raise ValueError("model.sentence_scale > 0 needs a sentence encoder")
    return encoder.encode(list(texts), progress=progress)


def fit_text_model(
    cfg: TextModelConfig,
    train: Sequence[TextRow],
    val: Sequence[TextRow],
    genres: list[str],
    encoder: SentenceEncoder | None = None,
    progress: bool = False,
) -> TextGenreModel:
    """Fit on `train`, tune thresholds on `val` (the training rows' when `val` is empty)."""
    import scipy.sparse as sp

    started = time.perf_counter()
    texts = [r.text for r in train]
    vectorizers = _vectorizers(cfg)
    parts = [vec.fit_transform(texts) for vec in vectorizers]
    dense = sentence_features(cfg, encoder, texts, progress)
    if dense is not None:
        parts.append(sp.csr_matrix(dense * cfg.sentence_scale))
    x = sp.hstack(parts, format="csr", dtype=np.float32)
    # Canonical (sorted, no duplicates) before the classifiers see it: scikit-learn's checks would
    # otherwise sort it in place, from both threads at once, and corrupt it (a crash, or a model
    # that differs run to run).
    x.sum_duplicates()
    y = label_matrix(train, genres)
    log.info("text model: %d texts, %d features, %d genres", x.shape[0], x.shape[1], len(genres))
    if cfg.engine == "keras":
        from training.text_keras import fit_dense_sigmoid

        weights, bias = fit_dense_sigmoid(x, y, cfg, progress)
    else:
        weights, bias = _fit_linear(x, y, cfg)
    prior = y.mean(axis=0).astype(np.float32)
    model = TextGenreModel(
        genres,
        _blocks(vectorizers),
        weights,
        bias,
        np.full(len(genres), 0.5, np.float32),
        prior,
        {"encoder": encoder.identity, "dims": DIMS, "scale": cfg.sentence_scale}
        if dense is not None
        else None,
    )
    tune_rows = list(val) or list(train)
    scores = model.probabilities(
        [r.text for r in tune_rows], sentence_features(cfg, encoder, [r.text for r in tune_rows])
    )
    model.thresholds = tune_thresholds(scores, label_matrix(tune_rows, genres)).astype(np.float32)
    model.info["genres_per_text"] = round(float(y.sum(axis=1).mean()), 3)
    model.info["train_seconds"] = round(time.perf_counter() - started, 1)
    model.info["thresholds_from"] = "validation" if val else "training (no validation rows)"
    return model


def _fit_linear(x, y: np.ndarray, cfg: TextModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per genre (liblinear), on two threads: liblinear releases the GIL, and
    threads share the matrix (processes would copy it, and liblinear refuses read-only memory maps)."""
    from joblib import parallel_backend
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    classifier = OneVsRestClassifier(
        LogisticRegression(C=cfg.c, solver="liblinear", class_weight=cfg.class_weight), n_jobs=2
    )
    with parallel_backend("threading", n_jobs=2):
        classifier.fit(x, y)
    weights = np.stack([est.coef_[0] for est in classifier.estimators_], axis=1).astype(np.float32)
    bias = np.array([est.intercept_[0] for est in classifier.estimators_], np.float32)
    return weights, bias


def text_scores(model: TextGenreModel, rows: Sequence[TextRow], encoder: SentenceEncoder | None,
                cfg: TextModelConfig) -> np.ndarray:
    texts = [r.text for r in rows]
    return model.probabilities(texts, sentence_features(cfg, encoder, texts))


def evaluate_text_model(
    model: TextGenreModel, rows: Sequence[TextRow], encoder: SentenceEncoder | None, cfg: TextModelConfig
) -> dict:
    """The figures on `rows`, each beside the prior's (every text scored by the training frequency)."""
    truth = label_matrix(rows, model.genres)
    scores = text_scores(model, rows, encoder, cfg)
    figures = multilabel_figures(scores, truth, model.thresholds)
    prior_scores = np.repeat(model.prior[None, :], len(rows), axis=0)
    # The prior's decisions: its k most frequent genres for every text, k the mean genres per text.
    top = max(1, round(float(model.info.get("genres_per_text", 1.0))))
    prior_thresholds = np.where(model.prior >= np.sort(model.prior)[-top], 0.0, 2.0)
    figures.update(
        {f"prior_{k}": v for k, v in multilabel_figures(prior_scores, truth, prior_thresholds).items()}
    )
    figures["prior_top3_share"] = prior_collapse(scores, model.prior)
    figures["items"] = len(rows)
    return figures
