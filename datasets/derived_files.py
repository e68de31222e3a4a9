"""Per-run files derived from the images (decoded pixels, a run's projected features): the cache
folder keeps the few most recently used of each kind and removes the rest.

Each such file is keyed by everything that made it (the image list, the size, the projection), so
every retrain of a growing catalog writes a new one and never reads the last week's again: 7.2 GB
of projected features per million images and per run, 307 GB of decoded 320 px pixels. Without a
bound the folder would hold one of each per retrain. What is removed is only derived: the feature
store keeps every image's features, and a run that wants a removed file back (a resumed run, the
same split again) gathers it from the store, or decodes it, once more.

A file is "used" when a run writes or reuses it (`mark_used` sets its modification time), and a
file used within `RECENT_SECONDS` is never removed: another run may be about to open it.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

KEEP = 3  # most recently used files of each kind: a retrain, the run before it and one more to compare
RECENT_SECONDS = 3600
PROJECTED = "run-features-"  # a run's projected features from the store (training/stored_features.py)
DECODED = "decoded-"  # decoded pixels at the training size (datasets/decoded_cache.py)
KINDS = {PROJECTED: "projected-feature sets", DECODED: "decoded image sets"}


def mark_used(array_path: Path, meta_path: Path) -> bool:
    """Set both files' modification time to now; False if either is missing (then build them)."""
    try:
        os.utime(meta_path)
        os.utime(array_path)
    except FileNotFoundError:
        return False
    except OSError:  # a cache this user may read and not write: used as it is, never pruned by us
        return array_path.is_file() and meta_path.is_file()
    return True


def prune(cache_dir: Path, prefix: str, keep: int = KEEP, now: float | None = None) -> list[Path]:
    """Remove the `prefix`*.npy files of `cache_dir` (with their .json) beyond the `keep` most recently
    used, sparing any used within RECENT_SECONDS; returns the .npy files removed."""
    now = time.time() if now is None else now
    arrays = []
    for path in cache_dir.glob(f"{prefix}*.npy"):
        try:
            arrays.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # removed meanwhile by another run
            continue
    arrays.sort(reverse=True)
    removed = []
    for used, path in arrays[keep:]:
        try:
            # Read again just before removing: a run may have reused it since the listing.
            status = path.stat()
            if now - status.st_mtime < RECENT_SECONDS:
                continue
            size = status.st_size
            path.with_suffix(".json").unlink(missing_ok=True)  # first: without it the .npy is never read
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as err:  # not ours to remove (a shared, read-only cache): left as it is
            log.info("left %s: %s", path, err.strerror or err)
            continue
        log.info("removed %s (%.0f MB, last used %s): derived, rebuilt if a run needs it again", path,
                 size / 1e6, time.strftime("%Y-%m-%d %H:%M", time.localtime(used)))
        removed.append(path)
    return removed


def usage(cache_dir: Path) -> dict[str, dict[str, int]]:
    """Per kind found in `cache_dir` (a `KINDS` prefix): how many files and their bytes (.json included)."""
    found: dict[str, dict[str, int]] = {}
    for prefix in KINDS:
        for path in cache_dir.glob(f"{prefix}*.npy"):
            try:
                size = path.stat().st_size + path.with_suffix(".json").stat().st_size
            except FileNotFoundError:  # half a pair: not read by any run, nor counted here
                continue
            entry = found.setdefault(prefix, {"files": 0, "bytes": 0})
            entry["files"] += 1
            entry["bytes"] += size
    return found
