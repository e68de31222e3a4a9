"""Train a style model, keep the best and last checkpoints, and export a bundle.

    python -m training.train --preset tiny --catalog data/catalog.sqlite --name demo
    python -m training.train --manifest train.csv --val-manifest val.csv --backbone webtoon_cnn
    python -m training.train --name demo --resume        # after a crash or kill -9
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from datasets.stop_signals import Stopped, stop_on_signals
from training.config import list_presets, load_config


def parse_args(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.splitlines()[0])
    parser.add_argument("--preset", help=f"a config under configs/ ({', '.join(list_presets())})")
    parser.add_argument("--config", help="a YAML config file (applied after --preset)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--name", help="run name: the folder under --out-dir")
    parser.add_argument("--out-dir", help="folder of runs (default: runs)")
    parser.add_argument("--catalog", help="catalog whose train/val splits to use")
    parser.add_argument("--manifest", help="train on this manifest instead of the catalog")
    parser.add_argument("--val-manifest", help="validation manifest (with --manifest)")
    parser.add_argument("--image-root", help="folder the manifests' image paths are relative to")
    parser.add_argument("--allow-outside-root", action="store_const", const=True,
                        help="accept manifest rows that point outside --image-root (refused by default)")
    parser.add_argument("--label", choices=("author", "genres"), help="what to balance and predict")
    parser.add_argument("--backbone", help="a registered backbone, e.g. style_cnn, webtoon_cnn")
    parser.add_argument("--weights", help="transfer backbones: 'imagenet' or a local .weights.h5 file")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--store", help="the feature store's folder (default: store/ in the cache folder)")
    parser.add_argument("--engine", choices=("local", "ray"), help="who encodes images the store lacks")
    parser.add_argument("--ray-address", help="--engine ray: join this cluster (default: start Ray here)")
    parser.add_argument("--workers", type=int, help="encoding workers (local: threads; ray: actors)")
    parser.add_argument("--resume", action="store_true", help="continue the run --name after a stop")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars and no TensorFlow notices (one line per epoch and the "
                             "summary still print)")
    return parser.parse_args(argv)


_FLAG_KEYS = {"name": "name", "out_dir": "out_dir", "catalog": "data.catalog", "manifest": "data.manifest",
              "val_manifest": "data.val_manifest", "image_root": "data.image_root", "label": "data.label",
              "allow_outside_root": "data.allow_outside_root",
              "backbone": "model.backbone", "weights": "model.weights", "epochs": "train.epochs",
              "store": "features.store", "engine": "features.engine", "ray_address": "features.ray_address",
              "workers": "features.workers"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # JSON is valid YAML, and quotes paths and names that YAML would otherwise reinterpret.
    overrides = list(args.set) + [f"{key}={json.dumps(getattr(args, flag))}"
                                  for flag, key in _FLAG_KEYS.items() if getattr(args, flag) is not None]
    try:
        config = load_config(args.preset, args.config, overrides)
        if args.resume and (config.run_dir / "config.yaml").is_file() and not (args.preset or args.config):
            # A resumed run keeps its saved settings; flags given now still win.
            config = load_config(None, str(config.run_dir / "config.yaml"), overrides)
        from datasets.tf_runtime import import_tensorflow

        import_tensorflow(quiet=args.quiet)
        from training.trainer import train

        with stop_on_signals() as stop:
            bundle = train(config, resume=args.resume, progress=not args.quiet, stop=stop)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Stopped:
        print(stopped_line(stop.name, config), file=sys.stderr)
        return stop.exit_code
    print(f"bundle: {bundle}")
    return 0


def stopped_line(signal_name: str, config) -> str:
    """Where a stopped run stands and the command that goes on from there."""
    from training.callbacks import read_state

    state = read_state(config.run_dir)
    if state is None:  # stopped while encoding: the store keeps every shard written
        return (f"stopped by {signal_name} before the first epoch; the same command goes on "
                "(images already encoded are kept in the feature store)")
    resume = shlex.join(["python", "-m", "training.train", "--out-dir", str(config.out_dir),
                         "--name", config.name, "--resume"])
    return f"stopped by {signal_name} after epoch {state['epochs_done']} (saved); resume with: {resume}"


if __name__ == "__main__":
    from datasets.cli_exit import run_main

    run_main(main)
