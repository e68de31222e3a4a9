import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.imagegen import style_image

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None,
            check_exit: int | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root, as a user would."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=cwd or REPO, capture_output=True,
                            text=True, timeout=300)
    if check_exit is not None:
        assert result.returncode == check_exit, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session", autouse=True)
def weights_cache_for_the_session(tmp_path_factory):
    """Converted ImageNet weights go to a folder of this test session, not the user's cache;
    subprocesses inherit it."""
    os.environ["STYLEFINDER_CACHE"] = str(tmp_path_factory.mktemp("stylefinder-cache"))


@pytest.fixture
def cli():
    return run_cli


GENRES = ("action", "drama", "comedy")


def write_manifests(folder, authors=3, titles=2, per_title=8, size=24):
    """train.csv, val.csv and test.csv; test holds one unseen title per author."""
    rows = {"train": [], "val": [], "test": []}
    for a in range(authors):
        for t in range(titles + 1):
            for i in range(per_title):
                name = f"a{a}t{t}_{i}.png"
                style_image(a, t * 100 + i, size).save(folder / name)
                split = "test" if t == titles else ("val" if i % 4 == 0 else "train")
                rows[split].append({"image": name, "title": f"title{a}-{t}", "author": f"author{a}",
                                    "genres": GENRES[a] + ("|drama" if t == 0 else "")})
    paths = {}
    for split, items in rows.items():
        paths[split] = folder / f"{split}.csv"
        with open(paths[split], "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["image", "title", "author", "genres"])
            writer.writeheader()
            writer.writerows(items)
    return paths


def train_cli(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "training.train", *args], cwd=REPO, capture_output=True,
                            text=True, timeout=600)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny author+genre model trained once per test session: (folder, manifests, process)."""
    pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp("tiny")
    paths = write_manifests(folder)
    result = train_cli("--preset", "tiny", "--manifest", str(paths["train"]), "--val-manifest",
                       str(paths["val"]), "--out-dir", str(folder / "runs"), "--name", "t", "--quiet",
                       "--set", "model.genre_loss=focal")
    return folder, paths, result


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run):
    return tiny_run[0] / "runs" / "t" / "bundle"
