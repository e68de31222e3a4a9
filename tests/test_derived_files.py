"""The cache folder keeps a few of each kind of per-run derived file (decoded pixels, a run's
projected features) and removes the rest, never one used within the hour; a removed one is built
again when a run wants it."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from datasets.decoded_cache import decode_all
from datasets.derived_files import KEEP, RECENT_SECONDS, prune, usage
from datasets.images import load_resized
from tests.conftest import REPO
from tests.imagegen import style_image

DAY = 86400


def _derived(folder, name, age_seconds, now):
    """A .npy (a real array) and its .json, last used `age_seconds` before `now`."""
    array, meta = folder / f"{name}.npy", folder / f"{name}.json"
    np.save(array, np.zeros((2, 3), np.float16))
    meta.write_text("{}")
    for path in (array, meta):
        os.utime(path, (now - age_seconds, now - age_seconds))
    return array


def test_prune_keeps_the_most_recently_used_and_anything_used_within_the_hour(tmp_path):
    now = time.time()
    by_age = [_derived(tmp_path, f"run-features-{i}", (i + 2) * DAY, now) for i in range(5)]
    just_used = _derived(tmp_path, "run-features-now", RECENT_SECONDS // 2, now)
    by_age[3].touch()  # reused by a run a moment ago: spared though older by its name
    other_kind = _derived(tmp_path, "decoded-32x32-old", 30 * DAY, now)
    in_flight = tmp_path / "run-features-9.npy.123.tmp"
    in_flight.write_bytes(b"being written")

    removed = prune(tmp_path, "run-features-", now=now)

    # Kept: the three most recently used (just used, by_age[3] touched, by_age[0]), then by_age[1]
    # and by_age[2] are older and go; by_age[4] too.
    assert KEEP == 3
    assert sorted(removed) == sorted([by_age[1], by_age[2], by_age[4]])
    for array in removed:
        assert not array.exists() and not array.with_suffix(".json").exists()
    for array in (just_used, by_age[0], by_age[3], other_kind):
        assert array.exists() and array.with_suffix(".json").exists()
    assert in_flight.exists()
    counted = usage(tmp_path)
    assert {k: v["files"] for k, v in counted.items()} == {"run-features-": 3, "decoded-": 1}
    assert counted["decoded-"]["bytes"] == other_kind.stat().st_size + 2  # and its "{}"


def test_a_file_used_within_the_hour_is_spared_even_beyond_the_count(tmp_path):
    now = time.time()
    arrays = [_derived(tmp_path, f"decoded-32x32-{i}", 60 * (i + 1), now) for i in range(KEEP + 2)]
    assert prune(tmp_path, "decoded-", now=now) == []
    assert all(a.exists() for a in arrays)


def test_decode_all_keeps_a_few_decoded_sets_and_decodes_a_removed_one_again(tmp_path):
    images = []
    for i in range(KEEP + 2):
        path = tmp_path / f"img{i}.png"
        style_image(i % 3, i, 24).save(path)
        images.append(path)
    cache = tmp_path / "cache"
    # KEEP + 1 runs, each on images its own (so each writes its own file), the oldest used days ago.
    first = decode_all(images[:1], (16, 16), cache, progress=False).path
    for n in range(2, KEEP + 2):
        decode_all(images[:n], (16, 16), cache, progress=False)
    stale = time.time() - 2 * DAY
    for k, path in enumerate(sorted(cache.glob("decoded-*.npy"), key=lambda p: p != first)):
        for f in (path, path.with_suffix(".json")):
            os.utime(f, (stale + k, stale + k))  # `first` the oldest
    assert len(list(cache.glob("decoded-*.npy"))) == KEEP + 1

    latest = decode_all(images, (16, 16), cache, progress=False)

    left = sorted(cache.glob("decoded-*.npy"))
    assert len(left) == KEEP and latest.path in left and first not in left
    assert not first.with_suffix(".json").exists()
    again = decode_all(images[:1], (16, 16), cache, progress=False)  # built once more, the same pixels
    assert again.path == first and first.exists()
    np.testing.assert_array_equal(again.pixels[0], load_resized(images[0], (16, 16)))



def test_a_cache_this_user_cannot_write_is_read_as_it_is(tmp_path):
    """Reusing decoded images from a cache folder the user may read and not write (a shared one)
    neither fails nor removes anything: run in a process that cannot write there (as root, one
    that gives up root after its imports)."""
    folder = Path(tempfile.mkdtemp(prefix="read-only-cache-"))  # outside pytest's private tmp
    try:
        folder.chmod(0o755)
        image = folder / "img.png"
        style_image(0, 0, 24).save(image)
        cache = folder / "cache"
        first = decode_all([image], (16, 16), cache, progress=False)
        now = time.time()
        stale = [_derived(cache, f"decoded-16x16-old{i}", (i + 2) * DAY, now) for i in range(KEEP + 1)]
        os.utime(first.path, (now - DAY, now - DAY))
        for f in cache.iterdir():
            f.chmod(0o444)
        cache.chmod(0o555)
        # Whatever decoding imports lazily (mmap for np.load, Pillow's plugins) is imported before
        # giving up root: the checkout and its environment may be readable by root alone.
        code = (
            "import logging, mmap, os, sys, numpy as np\n"
            "logging.basicConfig(level=logging.INFO)\n"
            "from datasets.decoded_cache import decode_all\n"
            "from datasets.images import load_resized, resize_fingerprint\n"
            f"load_resized({str(image)!r}, (16, 16)), resize_fingerprint((16, 16))\n"
            "if os.geteuid() == 0:\n"
            "    os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
            f"read = decode_all([{str(image)!r}], (16, 16), {str(cache)!r}, progress=False)\n"
            "print(int(read.pixels.sum()))\n")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert int(result.stdout) == int(np.asarray(first.pixels, np.int64).sum())
        assert all(s.exists() for s in stale) and first.path.exists()
        assert "left " in result.stderr and "Permission denied" in result.stderr
    finally:
        cache.chmod(0o755)
        shutil.rmtree(folder)


def test_a_kill_between_the_two_removals_leaves_a_set_that_is_decoded_again(tmp_path):
    """Pruning removes the .json first: a kill -9 right after leaves a lone .npy, which no run reads
    (it is decoded again to the same pixels, over it) and `usage` does not count."""
    image = tmp_path / "img.png"
    style_image(1, 2, 24).save(image)
    cache = tmp_path / "cache"
    first = decode_all([image], (16, 16), cache, progress=False)
    first.path.with_suffix(".json").unlink()  # the state a kill between the two unlinks leaves
    assert usage(cache) == {}
    again = decode_all([image], (16, 16), cache, progress=False)
    assert again.path == first.path and first.path.with_suffix(".json").exists()
    np.testing.assert_array_equal(again.pixels[0], load_resized(image, (16, 16)))
    assert usage(cache)["decoded-"]["files"] == 1
