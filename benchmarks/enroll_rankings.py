"""Title rankings for enrolled titles, compared offline on the enroll benchmark's own bundles; prints JSON.

usage: python benchmarks/enroll_rankings.py DATA_DIR WORK [WORK ...] [--settings JSON]

Each WORK is the `--work` folder of one `python benchmarks/enroll.py DATA_DIR --work WORK` run (the
bundle trained without the held-out titles, and its manifest). For every image of DATA_DIR's
train.csv and test.csv the bundle's Keras model gives its hidden layers' outputs once (cached in
WORK/layer_outputs.npz). Then, for each setting, the benchmark's protocol is replayed with numpy:
the trained titles' exemplars are their manifest images, the held-out titles are enrolled with their
training-name images, and test-name images are ranked over all titles by

    (1 - mean_weight) x mean cosine of a title's `neighbours` nearest exemplars
    + mean_weight x cosine to the title's mean embedding

with the exemplars in `layer`, projected on the 128 leading principal directions of the trained
titles' exemplars (divided by each direction's singular value to the power `whiten`). With
today's settings (DEFAULT) it gives the enroll benchmark's own figures, which checks the replay
(so does tests/test_enroll_rankings.py, against the library's own scoring). Reported per setting
and WORK: enrolled titles' hit@1, trained titles' hit@1 after enrolling, and its change against the
mean ranking before enrolling (the benchmark's "trained titles unchanged"); and the mean over the
WORKs.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inference.query import MEAN_WEIGHT  # noqa: E402
from inference.search import unit_rows as unit  # noqa: E402
from inference.title_exemplars import NEIGHBOURS  # noqa: E402

# Today's ranking (inference.query, inference.title_exemplars), and the grid around it.
DEFAULT = {"layer": "descriptor", "neighbours": NEIGHBOURS, "mean_weight": MEAN_WEIGHT, "whiten": 0.0}
GRID = [dict(DEFAULT, neighbours=k, mean_weight=w) for k in (1, 2, 3) for w in (0.0, 0.05, 0.1)] + [
    dict(DEFAULT, whiten=p) for p in (0.25, 0.5, 0.75, 1.0)] + [
    dict(DEFAULT, whiten=0.5, neighbours=2), dict(DEFAULT, layer="head_bottleneck")]
SPREAD_FLOOR = 1e-3  # of the widest direction's: whitening leaves a degenerate direction's noise alone
LAYERS = ("head_bottleneck", "head_hidden", "descriptor", "embedding")
# Not a layer: the unit pre-activation of a bundle whose `head_hidden` is linear (the default since
# the ninth session) beside its unit activation, so that a cosine is the mean of the two spaces'.
BOTH_SIDES = "pre_and_post_relu"
DIM = 128


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def layer_outputs(work: Path, data_dir: Path) -> dict[str, np.ndarray]:
    """The bundle model's LAYERS for train.csv then test.csv, computed once per WORK."""
    cached = work / "layer_outputs.npz"
    if cached.is_file():
        try:
            with np.load(cached) as arrays:
                return dict(arrays)
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise SystemExit(f"error: {cached}: unreadable ({err}); delete it to compute it again") from None
    import keras

    from datasets.images import DEFAULT_MAX_PIXELS, load_resized
    from models.saving import load_model

    model = load_model(work / "runs" / "base" / "bundle" / "model.keras", compile=False)
    names = [n for n in LAYERS if any(layer.name == n for layer in model.layers)]
    sub = keras.Model(model.input, {n: model.get_layer(n).output for n in names})
    size = tuple(model.input_shape[1:3])
    rows = read_rows(data_dir / "train.csv") + read_rows(data_dir / "test.csv")
    parts = {n: [] for n in names}
    for start in range(0, len(rows), 64):
        images = np.stack([load_resized(data_dir / r["image"], size, DEFAULT_MAX_PIXELS)
                           for r in rows[start:start + 64]]).astype(np.float32) / 255.0
        for n, value in sub.predict(images, verbose=0).items():
            parts[n].append(np.asarray(value, np.float32))
    out = {n: np.concatenate(v) for n, v in parts.items()}
    partial = cached.with_name(cached.name + ".partial")
    with open(partial, "wb") as f:  # renamed into place whole: a kill leaves no half-written cache
        np.savez(f, **out)
    partial.replace(cached)
    return out


def layer_rows(outputs: dict[str, np.ndarray], layer: str) -> np.ndarray:
    """A layer's rows as unit vectors (or BOTH_SIDES of the hidden layer's ReLU)."""
    if layer != BOTH_SIDES:
        return unit(outputs[layer].astype(np.float64))
    hidden = outputs["head_hidden"].astype(np.float64)
    if not (hidden < 0).any():
        raise SystemExit(f"error: {BOTH_SIDES} needs a bundle whose head_hidden is linear "
                         "(model.descriptor_before_relu: true)")
    return unit(np.concatenate([unit(hidden), unit(np.maximum(hidden, 0.0))], axis=1))


def replay(outputs: dict[str, np.ndarray], title: np.ndarray, is_train: np.ndarray, held: np.ndarray,
           setting: dict) -> dict:
    """The enroll benchmark's title hit@1 figures under one ranking setting."""
    titles = np.unique(title, return_inverse=True)[1]
    n_titles = titles.max() + 1
    trained_ex, enrolled_ex = is_train & ~held, is_train & held
    trained_q, enrolled_q = ~is_train & ~held, ~is_train & held
    units = layer_rows(outputs, setting["layer"])
    mean = units[trained_ex].mean(axis=0)
    _, singular, directions = np.linalg.svd(units[trained_ex] - mean, full_matrices=False)
    dim = min(DIM, units.shape[1])
    spread = np.maximum(singular[:dim], SPREAD_FLOOR * singular[0])
    basis = directions[:dim].T / spread ** setting["whiten"]
    space = unit((units - mean) @ basis)
    embedding = unit(outputs["embedding"].astype(np.float64))

    def hit1(exemplars: np.ndarray, queries: np.ndarray, mean_weight: float, neighbours: int) -> float:
        owner = titles[exemplars]
        present = np.bincount(owner, minlength=n_titles) > 0
        means = np.zeros((n_titles, embedding.shape[1]))
        np.add.at(means, owner, embedding[exemplars])
        similarity = space[queries] @ space[exemplars].T
        scores = np.full((queries.sum(), n_titles), -9.0)
        for t in np.flatnonzero(present):
            columns = np.sort(similarity[:, owner == t], axis=1)
            scores[:, t] = columns[:, -min(neighbours, columns.shape[1]):].mean(axis=1)
        scores = (1 - mean_weight) * scores + mean_weight * (embedding[queries] @ unit(means).T)
        scores[:, ~present] = -9.0
        return float((scores.argmax(axis=1) == titles[queries]).mean())

    k, w = setting["neighbours"], setting["mean_weight"]
    means_before = hit1(trained_ex, trained_q, 1.0, 1)
    after = hit1(trained_ex | enrolled_ex, trained_q, w, k)
    return {"enrolled_hit1": round(hit1(trained_ex | enrolled_ex, enrolled_q, w, k), 4),
            "trained_hit1_after": round(after, 4), "trained_change": round(after - means_before, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("works", type=Path, nargs="+")
    parser.add_argument("--settings", type=json.loads, default=None,
                        help="a JSON list of settings (keys of DEFAULT); default: a grid around it")
    args = parser.parse_args()
    for split in ("train.csv", "test.csv"):
        if not (args.data_dir / split).is_file():
            raise SystemExit(f"error: {args.data_dir}: no {split} (run benchmarks/enroll.py on it first)")
    train = read_rows(args.data_dir / "train.csv")
    rows = train + read_rows(args.data_dir / "test.csv")
    title = np.array([r["title"] for r in rows])
    is_train = np.arange(len(rows)) < len(train)
    settings = [dict(DEFAULT, **s) for s in args.settings] if args.settings else GRID
    results = []
    for work in args.works:
        for needed in (work / "train_without_held_out.csv", work / "runs/base/bundle/model.keras"):
            if not needed.is_file():
                raise SystemExit(f"error: {work}: not a finished `benchmarks/enroll.py --work` folder "
                                 f"(no {needed.relative_to(work)})")
        kept = {r["title"] for r in read_rows(work / "train_without_held_out.csv")}
        held = np.array([t not in kept for t in title])
        outputs = layer_outputs(work, args.data_dir)
        results.append([replay(outputs, title, is_train, held, s) for s in settings])
    report = []
    for i, setting in enumerate(settings):
        each = [r[i] for r in results]
        report.append({"setting": setting, "runs": each, "mean": {
            key: round(float(np.mean([r[key] for r in each])), 4) for key in each[0]}})
    print(json.dumps({"benchmark": "enroll_rankings", "dataset": args.data_dir.name,
                      "works": [str(w) for w in args.works], "results": report}, indent=1))


if __name__ == "__main__":
    main()
