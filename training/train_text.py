"""Train the text genre model (synopsis -> genres) and export it, beside the image model if asked.

    python -m training.train_text --manifest data/tags/train.csv --val-manifest data/tags/val.csv \\
        --test-manifest data/tags/test.csv --name tags
    python -m training.train_text --catalog data/catalog.sqlite --name anime --bundle runs/demo/bundle
    python -m training.train_text --preset tiny --manifest train.csv --name smoke

The run folder gets `config.yaml` (the resolved config), `text_genres/` (the model the query
path reads with numpy) and `metrics.json` (validation, and test when given, beside the prior).
With --bundle the model is also written into that image bundle, so `inference.similar`,
the web app and reports answer from the synopsis too.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from datasets.cli_exit import run_main
from datasets.text_rows import TextRow, catalog_text_rows, genre_vocabulary, read_text_manifest
from datasets.texts import TextError
from models.text_genre_model import TEXT_MODEL_DIR
from training.text_config import TextRunConfig, list_text_presets, load_text_config

log = logging.getLogger("training.train_text")

_FLAG_KEYS = {
    "name": "name",
    "out_dir": "out_dir",
    "store": "store",
    "catalog": "data.catalog",
    "manifest": "data.manifest",
    "val_manifest": "data.val_manifest",
    "engine": "model.engine",
}


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(
        prog="python -m training.train_text", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--preset", help=f"a config under configs/text/ ({', '.join(list_text_presets())})")
    parser.add_argument("--config", help="a YAML config file (applied after --preset)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one setting, e.g. --set model.c=1 (repeatable)",
    )
    parser.add_argument("--name", help="run name: the folder under --out-dir")
    parser.add_argument("--out-dir", help="folder of runs (default: runs)")
    parser.add_argument("--catalog", help="catalog whose titles' synopses and genres to use")
    parser.add_argument("--manifest", help="text manifest: id,group,text,genres[,lang]")
    parser.add_argument("--val-manifest", help="validation manifest (thresholds are tuned on it)")
    parser.add_argument("--test-manifest", help="also evaluate on this manifest, beside the prior")
    parser.add_argument("--engine", choices=("linear", "keras"), help="the classifier (default: linear)")
    parser.add_argument("--store", help="feature store folder for sentence features (default: cache/store)")
    parser.add_argument("--bundle", help="also write the model into this image bundle folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def resolve_config(args) -> TextRunConfig:
    overrides = list(args.set)
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    return load_text_config(args.preset, args.config, overrides)


def load_rows(cfg: TextRunConfig) -> tuple[list[TextRow], list[TextRow]]:
    data = cfg.data
    if data.manifest:
        train = read_text_manifest(data.manifest, data.languages)
        val = read_text_manifest(data.val_manifest, data.languages) if data.val_manifest else []
    elif data.catalog:
        if not Path(data.catalog).is_file():
            raise TextError(f"{data.catalog}: no such catalog")
        train, val = (
            catalog_text_rows(data.catalog, data.train_split),
            catalog_text_rows(data.catalog, data.val_split),
        )
    else:
        raise TextError("nothing to train on: give --manifest or --catalog")
    if len(train) < 2:
        raise TextError(
            f"{data.manifest or data.catalog}: {len(train)} usable training texts (texts with "
            "genres); at least 2 are needed"
        )
    return train, val


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = resolve_config(args)
        train, val = load_rows(cfg)
        test = read_text_manifest(args.test_manifest, cfg.data.languages) if args.test_manifest else []
        if args.bundle and not (Path(args.bundle) / "bundle.json").is_file():
            raise TextError(f"{args.bundle}: not a model bundle (no bundle.json)")
    except (TextError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    genres = genre_vocabulary(train, cfg.data.min_genre_items)
    if not genres:
        print(
            f"error: {cfg.data.manifest or cfg.data.catalog}: no genre has {cfg.data.min_genre_items} or "
            "more training texts (and fewer than all)",
            file=sys.stderr,
        )
        return 2

    from models.sentence_encoder import SentenceEncoder, SentenceEncoderMissing
    from training.text_genres import evaluate_text_model, fit_text_model

    try:
        encoder = SentenceEncoder(str(cfg.store_dir)) if cfg.model.sentence_scale else None
    except SentenceEncoderMissing as err:
        print(f"error: {err} (or --set model.sentence_scale=0)", file=sys.stderr)
        return 2
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
    log.info("%d training texts, %d validation, %d genres", len(train), len(val), len(genres))
    model = fit_text_model(cfg.model, train, val, genres, encoder, progress=not args.quiet)
    metrics = {"train_seconds": model.info["train_seconds"]}
    for split, rows in (("val", val), ("test", test)):
        if rows:
            metrics[split] = evaluate_text_model(model, rows, encoder, cfg.model)
    if args.bundle:
        from training.fusion import fuse_with_bundle

        model.info["fusion"], fused_test = fuse_with_bundle(args.bundle, model, val, test, encoder, cfg.model)
        if fused_test:
            metrics["test_with_images"] = fused_test
    model.info.update(
        config=json.loads(json.dumps(_plain_config(cfg))),
        metrics=metrics,
        data={"train_texts": len(train), "val_texts": len(val)},
    )
    model.save(run_dir / TEXT_MODEL_DIR)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    if args.bundle:
        model.save(Path(args.bundle) / TEXT_MODEL_DIR)
    for line in report_lines(metrics, model.info.get("fusion")):
        print(line)
    print(
        f"text model: {run_dir / TEXT_MODEL_DIR}"
        + (f" (and {args.bundle}/{TEXT_MODEL_DIR})" if args.bundle else "")
    )
    return 0


def _plain_config(cfg: TextRunConfig) -> dict:
    import yaml

    return yaml.safe_load(cfg.to_yaml())


def report_lines(metrics: dict, fusion: dict | None = None) -> list[str]:
    lines = [f"trained in {metrics['train_seconds']:.0f} s"]
    if fusion:
        lines.append(fusion_line(fusion))
    both = metrics.get("test_with_images")
    if both:
        lines.append(f"test with images ({both['items']} titles): macro mAP image "
                     f"{both['image_macro_map']:.3f}, text {both['text_macro_map']:.3f}, "
                     f"fused {both['fused_macro_map']:.3f}")
    for split in ("val", "test"):
        m = metrics.get(split)
        if m:
            lines.append(
                f"{split} ({m['items']} texts): macro mAP {m['macro_map']:.3f} "
                f"(prior {m['prior_macro_map']:.3f}), "
                f"micro mAP {m['micro_map']:.3f} (prior {m['prior_micro_map']:.3f}), "
                f"P@1 {m['p_at_1']:.3f} (prior {m['prior_p_at_1']:.3f}), micro-F1 {m['micro_f1']:.3f}, "
                f"macro-F1 {m['macro_f1']:.3f}; top-3 equal to the prior's on "
                f"{m['prior_top3_share']:.1%} of texts"
            )
    return lines


def fusion_line(fusion: dict) -> str:
    if "val_macro_map" not in fusion:
        return f"fusion off: {fusion.get('reason', 'not measured')}"
    figures = fusion["val_macro_map"]
    state = (f"on, text weight {fusion['text_weight']:.1f}" if fusion["enabled"] else
             f"off (gain {fusion['val_gain']:+.3f} < {fusion['min_gain']})")
    return (f"fusion {state}: validation macro mAP image {figures['image']:.3f}, text {figures['text']:.3f}, "
            f"fused {figures['fused']:.3f} ({fusion['items']} titles)")


if __name__ == "__main__":
    run_main(main)
