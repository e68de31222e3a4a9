"""Encode a catalog or a manifest into the feature store, once, ahead of any training run.

    python -m training.encode --manifest data/icons/manifest.csv --store data/features
    python -m training.encode --catalog data/catalog.sqlite --store /shared/features --engine ray \\
        --ray-address HEAD:6379
    python -m training.encode --catalog ... --store /shared/features \\
        --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT

The encoder is the one training would use for the same model settings (`--preset`, `--config`,
`--set model.KEY=VALUE`). `--shard I/N` encodes only slice I of N of the images (by digest),
with no engine at all: N jobs of a batch scheduler fill one shared store between them.
A rerun encodes only what the store lacks; `python -m datasets.features stats` says what it holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from training.config import load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.encode", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--manifest", help="CSV manifest (image,title,author,genres)")
    source.add_argument("--catalog", help="catalog whose images to encode")
    parser.add_argument("--split", help="with --catalog: only this split (default: every usable image)")
    parser.add_argument("--image-root", help="folder the manifest's image paths are relative to")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="accept manifest rows that point outside --image-root")
    parser.add_argument("--store", help="the feature store's folder (default: runs/cache/store)")
    parser.add_argument("--engine", choices=("local", "ray"), default=None, help="default: local")
    parser.add_argument("--ray-address", help="--engine ray: join this cluster (default: start Ray here)")
    parser.add_argument("--workers", type=int, help="local: LiteRT lanes (one single-threaded interpreter "
                        "each); ray: actors (default: one per CPU)")
    parser.add_argument("--shard", metavar="I/N", help="encode only slice I of N (batch array jobs)")
    parser.add_argument("--preset", help="model settings of this preset under configs/")
    parser.add_argument("--config", help="model settings of this YAML config")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars, no notices: only warnings, errors and --json's report")
    return parser.parse_args(argv)


def image_paths(args: argparse.Namespace) -> list[Path]:
    if args.manifest:
        from training.data import rows_from_manifest

        rows = rows_from_manifest(args.manifest, args.image_root, args.allow_outside_root)
        return [r.path for r in rows]
    from datasets.catalog import Catalog

    with Catalog(args.catalog) as catalog:
        return [r.path for r in catalog.images(args.split)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
    overrides = list(args.set) + [f"features.{key}={json.dumps(value)}" for key, value in
                                  (("store", args.store), ("engine", args.engine),
                                   ("ray_address", args.ray_address), ("workers", args.workers))
                                  if value is not None]
    try:
        from datasets.features.digests import content_digests
        from datasets.features.encoders import encoder_key, ready_encoder
        from datasets.features.engines import encode_missing, parse_part
        from datasets.features.store import FeatureStore, StoreError
        from models.registry import backbone_spec
        from training.weights_identity import encoder_identity

        part = parse_part(args.shard)
        config = load_config(args.preset, args.config, overrides)
        paths = image_paths(args)
        if not paths:
            raise ValueError(f"{args.manifest or args.catalog}: no images to encode")
        spec_info = backbone_spec(config.model.backbone)
        if not spec_info.transfer:
            raise ValueError(f"{config.model.backbone} trains from scratch: no frozen features to store")
        size = tuple(config.model.image_size or spec_info.default_size)
        root = config.store_root
        with FeatureStore(root) as store:
            spec = ready_encoder(root, encoder_key(encoder_identity(config.model, size, config.train.seed)))
            # Converting the encoder needs TensorFlow (about 5 s to start); a store that has it does not.
            if spec is None:
                from datasets.tf_runtime import import_tensorflow

                import_tensorflow(quiet=args.quiet)  # first: quiets its start-up notices for what imports it
                from training.style_encoder import ensure_encoder

                spec = ensure_encoder(store, config.model, size, config.train.seed, paths[:64])
            digests = content_digests(store, paths, progress=not args.quiet)
            unreadable = [p for p, d in zip(paths, digests, strict=True) if d is None]
            if len(unreadable) == len(paths):
                raise ValueError(f"{unreadable[0]}: cannot be read, nor can any other image listed")
            for path in unreadable[:5]:
                logging.warning("%s: cannot be read; skipped", path)
            if len(unreadable) > 5:
                logging.warning("... and %d more files that cannot be read", len(unreadable) - 5)
            report = encode_missing(store, spec, digests, paths, config.features.engine, part,
                                    config.features.ray_address, config.features.workers, not args.quiet)
    except (ValueError, OSError, StoreError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return 2
    if args.json:  # otherwise the report is the last line logged
        print(json.dumps({"store": str(root), "encoder": spec.key, **report.__dict__}))
    return 0


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
