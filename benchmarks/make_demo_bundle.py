"""Turn the icon benchmark's trained bundle into the demo bundle shipped in inference/demo_bundle.

usage: python benchmarks/train_datasets.py data/icons --work data/demo_train --runs default > train.json
       python benchmarks/make_demo_bundle.py data/demo_train/runs/default/bundle train.json data/icons

It copies the bundle, adds the dataset's LICENSES.md (the thumbnails are icons from every theme),
writes the held-out test figures from train.json into the model card, and replaces machine paths
in config.yaml with paths relative to the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = REPO / "inference" / "demo_bundle"
# A pretrained backbone up to block group 5 is ~1.4M weights, stored twice (model.keras for the
# Keras fallback and model.tflite): about 17 MB with the thumbnails, and 2 MB of title exemplars.
LIMIT_BYTES = 20 * 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("train_json", type=Path)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--run", default="default", help="the run of train_json the bundle comes from")
    args = parser.parse_args()
    results = json.loads(args.train_json.read_text())
    test = results["results"][args.run]
    tmp = TARGET.with_name("demo_bundle.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(args.bundle, tmp)
    shutil.copy(args.data_dir / "LICENSES.md", tmp / "LICENSES.md")
    config = (tmp / "config.yaml").read_text()
    work = args.bundle.resolve().parents[2]
    config = config.replace(str(work), "data/demo_train").replace(str(args.data_dir.resolve()), "data/icons")
    (tmp / "config.yaml").write_text(config)
    card = (tmp / "MODEL_CARD.md").read_text().replace(str(work), "data/demo_train")
    pairs = [("author_top1", "prior_author_top1"), ("author_top3", None), ("author_macro_f1", None),
             ("title_hit1", "prior_title_hit1"), ("title_hit10", None), ("title_mrr", None),
             ("genre_micro_f1", None), ("genre_map", None)]
    lines = [f"- {key:<22} {test[key]:.3f}" + (f"   (prior {test[prior]:.3f})" if prior else "")
             for key, prior in pairs if key in test]
    card += "\n".join([
        "", "## Test metrics (held-out icon names)",
        f"Measured on {results['date']} by `benchmarks/train_datasets.py` ({results['split']}): the test "
        "icons' names never appear in training, their titles and authors do. Priors are the most "
        "frequent training label. Full figures are in docs/benchmarks.md.",
        "", *lines, "",
        "## Data and licenses",
        "Trained on the icon-theme dataset built by `../shared/data/icon_themes.py` from Debian's icon "
        "packages (27 themes as titles, 14 projects as authors, 6,872 icons). The thumbnails in "
        "`thumbs/` are icons from those themes; each is under its package's license, listed with the "
        "full debian/copyright texts in `LICENSES.md`. The model's weights are derived from that data.",
        "", "## Limits",
        "Icons are small, centred and aligned; this model knows 27 icon themes, not webtoons or anime. "
        "It is a demonstration of the pipeline: retrain on your own catalog for real use.", ""])
    (tmp / "MODEL_CARD.md").write_text(card)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    if size > LIMIT_BYTES:
        shutil.rmtree(tmp)
        raise SystemExit(f"error: {args.bundle}: {size:,} bytes, over the {LIMIT_BYTES:,} byte limit")
    shutil.rmtree(TARGET, ignore_errors=True)
    tmp.rename(TARGET)
    print(json.dumps({"demo_bundle": str(TARGET.relative_to(REPO)), "bytes": size}))


if __name__ == "__main__":
    main()
