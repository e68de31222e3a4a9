"""`python -m datasets.features {stats,gc,verify}`: what the feature store holds, and its upkeep.

    python -m datasets.features stats --store runs/cache/store
    python -m datasets.features gc --store runs/cache/store --keep-catalog data/catalog.sqlite
    python -m datasets.features gc --store runs/cache/store --drop-encoder KEY  # a key `stats` lists
    python -m datasets.features verify --store runs/cache/store

Encoding is `python -m training.encode` (it builds the encoder); nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zipfile
from pathlib import Path

from datasets.derived_files import KEEP, KINDS, usage
from datasets.features.encoders import EncoderSpec
from datasets.features.store import FeatureStore, StoreError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets.features", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, text in (("stats", "images, shards and bytes per encoder"),
                       ("gc", "drop features that no given catalog or manifest refers to"),
                       ("verify", "check every shard's checksums; drop the broken ones")):
        p = commands.add_parser(name, help=text)
        p.add_argument("--store", required=True, help="the feature store's folder")
        p.add_argument("--json", action="store_true", help="print one JSON object")
    gc = commands.choices["gc"]
    gc.add_argument("--keep-catalog", action="append", default=[], help="a catalog whose images stay")
    gc.add_argument("--keep-manifest", action="append", default=[], help="a manifest whose images stay")
    gc.add_argument("--image-root", help="folder the manifests' image paths are relative to")
    gc.add_argument("--drop-encoder", action="append", default=[], metavar="KEY",
                    help="drop every feature of encoder KEY (see stats), e.g. one a Pillow upgrade replaced")
    gc.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    return parser


def _kept_paths(args: argparse.Namespace) -> list[Path]:
    from datasets.catalog import Catalog
    from datasets.imports import read_manifest

    paths: list[Path] = []
    for catalog_path in args.keep_catalog:
        with Catalog(catalog_path) as catalog:
            paths.extend(r.path for r in catalog.images(usable_only=False))
    for manifest in args.keep_manifest:
        records, _ = read_manifest(Path(manifest), args.image_root, allow_outside_root=True)
        paths.extend(Path(r.path) for r in records)
    return paths


def verify(store: FeatureStore) -> dict:
    """Read every shard whole (zip CRCs included); a broken one is dropped, its images to be encoded again."""
    store.reconcile()
    checked, dropped = 0, []
    for encoder, name in store.db.execute("SELECT encoder, name FROM shards").fetchall():
        path = store.shard_path(encoder, name)
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad:
                raise StoreError(f"{path}: corrupt shard (checksum of {bad})")
        except (OSError, zipfile.BadZipFile, StoreError) as err:
            reason = str(err) if isinstance(err, StoreError) else f"{path}: corrupt shard ({err})"
            store.forget_shard(encoder, name, f"{reason}; its images will be encoded again")
            dropped.append(str(path))
        checked += 1
    return {"shards_checked": checked, "shards_dropped": dropped}


def describe_encoders(store: FeatureStore, report: dict) -> dict:
    """Each encoder of a `stats` report with what it is, from its description in the store, and
    whether this machine resizes as its maker did (`same_resize`: None when not recorded); an
    encoder described but with nothing stored yet is listed too."""
    for path in sorted((store.root / "encoders").glob("enc-*.json")):
        report["encoders"].setdefault(path.stem, {"images": 0, "usable": 0, "shards": 0, "bytes": 0})
    for key, entry in report["encoders"].items():
        try:
            spec = EncoderSpec.load(store, key)
        except StoreError:
            entry.update(what="no description (encoders/ lacks it)", same_resize=None)
            continue
        what = spec.identity.get("backbone") or spec.identity.get("kind") or "encoder"
        entry.update(what=f"{what} at {spec.size[0]}x{spec.size[1]}", same_resize=spec.same_resize)
    return report


def collect_garbage(store: FeatureStore, args: argparse.Namespace) -> dict:
    """The encoders dropped whole, then the images no kept catalog or manifest refers to."""
    # Every key checked before anything goes: a typo must not cost the other encoders' features.
    planned = [store.drop_encoder(key, dry_run=True) for key in args.drop_encoder]
    report: dict = {"encoders_dropped": planned if args.dry_run else
                    [store.drop_encoder(key) for key in args.drop_encoder]}
    if args.keep_catalog or args.keep_manifest:
        from datasets.features.digests import content_digests

        kept = [d for d in content_digests(store, _kept_paths(args), progress=False) if d]
        report.update(store.gc(kept, args.dry_run))
    if args.dry_run:
        report["dry_run"] = "nothing was deleted"
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = Path(args.store)
    try:
        if not (root / "index.sqlite").is_file() and not (root / "shards").is_dir():
            raise StoreError(f"{root}: not a feature store (no index.sqlite or shards/)")
        with FeatureStore(root) as store:
            if args.command == "stats":
                store.reconcile()
                report = describe_encoders(store, store.stats())
                report["beside"] = {"folder": str(root.parent), **usage(root.parent)}
            elif args.command == "verify":
                report = verify(store)
            else:
                if not (args.keep_catalog or args.keep_manifest or args.drop_encoder):
                    raise StoreError("gc needs --keep-catalog, --keep-manifest or --drop-encoder: what "
                                     "should stay or go")
                report = collect_garbage(store, args)
    except (StoreError, ValueError, OSError) as err:
        print(f"error: {str(err).splitlines()[0]}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report))
    else:
        _print(report)
    return 0


def _print(report: dict) -> None:
    if "encoders" in report:
        print(f"{report['root']}: {report['bytes'] / 1e6:.1f} MB; {report['files_remembered']} file digests")
        for key, entry in sorted(report["encoders"].items()):
            resize = {True: "this machine's resize", False: "ANOTHER resize than this machine's",
                      None: "resize not recorded"}[entry.get("same_resize")]
            print(f"  {key}: {entry['images']} images ({entry['usable']} usable) in "
                  f"{entry.get('shards', 0)} shards, {entry.get('bytes', 0) / 1e6:.1f} MB, "
                  f"{entry.get('bytes_per_image', 0)} bytes/image; {entry.get('what', '')}, {resize}")
        beside = {k: v for k, v in report.get("beside", {}).items() if k in KINDS}
        if beside:  # a run's derived files in the cache folder that holds the store (runs/cache/)
            sets = ", ".join(f"{v['files']} {KINDS[k]} ({v['bytes'] / 1e6:.1f} MB)"
                             for k, v in beside.items())
            print(f"beside it in {report['beside']['folder']}: {sets}; runs keep the {KEEP} most recently "
                  "used of each kind and remove older ones")
    else:
        for entry in report.get("encoders_dropped", ()):
            print(f"encoder {entry['encoder']}: {entry['images_dropped']} images in "
                  f"{entry['shards_deleted']} shards, {entry['bytes_freed'] / 1e6:.1f} MB")
        for key, value in report.items():
            if key != "encoders_dropped":
                print(f"{key}: {value}")

