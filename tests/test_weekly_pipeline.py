"""The documented weekly pipeline (examples/weekly/stylefinder-weekly.sh) run twice against the
stand-in sites: the first week collects and enrolls the titles, the second only what was published."""

import os
import shutil
import subprocess
import sys

import pytest

from inference.bundle import Bundle
from tests.conftest import REPO
from tests.fake_sites import FakeSites

pytest.importorskip("selenium")
pytest.importorskip("tensorflow")  # the session's tiny bundle is trained

SCRIPT = REPO / "examples" / "weekly" / "stylefinder-weekly.sh"


def week(sites, tmp_path, bundle) -> subprocess.CompletedProcess:
    env = {**os.environ, "STYLEFINDER_HOME": str(REPO), "PYTHON": sys.executable,
           "CATALOG": str(tmp_path / "catalog.sqlite"), "BUNDLE": str(bundle),
           "STORE": str(tmp_path / "store"),
           "SITES": "naver", "RETRAIN_EVERY_WEEKS": "100000",  # the retrain step is training's own tests
           "COLLECT_FLAGS": f"--base-url {sites.base} --min-delay 0 --max-delay 0 --min-episodes 2"}
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


def test_two_weeks_of_the_documented_pipeline(tiny_bundle, tmp_path):
    ongoing = {"301": ("Sea Road", "Bae Brush", "Bae Brush", [("판타지", "GENRE_FANTASY")], 3, "RATE_12",
                       "MONDAY")}
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    trained = len(Bundle.load(bundle).titles)
    with FakeSites(naver=ongoing, naver_finished={}) as sites:
        first = week(sites, tmp_path, bundle)
        assert first.returncode == 0, first.stderr
        assert "enrolled 3 images: 1 new titles" in first.stdout
        ongoing["301"] = (*ongoing["301"][:4], 5, *ongoing["301"][5:])  # two episodes published
        second = week(sites, tmp_path, bundle)
        assert second.returncode == 0, second.stderr
    assert "new: 0 titles, 2 images of titles already in the catalog" in second.stdout
    assert "enrolled 2 images: 0 new titles, 1 updated" in second.stdout
    after = Bundle.load(bundle)
    assert len(after.titles) == trained + 1 and after.titles[-1].name == "Sea Road"
    assert after.titles[-1].images == 5
