"""SIGINT and SIGTERM, sent to real subprocesses in the middle of their work: one line saying
where the command stopped, 128 + the signal as its status, and the catalog, bundle, report or
training run whole (training: resumable with the command it prints)."""

import json
import shlex
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, write_manifests
from tests.imagegen import style_image


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _when(ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not ready():
        time.sleep(0.05)
    assert ready(), "the moment to signal at never came"


def _stopped(process: subprocess.Popen, signum: int) -> str:
    """Signal `process`, wait for it, check its status; its stderr's lines."""
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    return err


def _images(folder, count: int, size: int = 48):
    for i in range(count):
        target = folder / f"author{i % 3}" / f"title{i % 6}"
        target.mkdir(parents=True, exist_ok=True)
        style_image(i % 3, i, size).save(target / f"{i:04d}.png")
    return folder


def test_sigint_during_an_enroll_leaves_the_bundle_as_it_was(tmp_path):
    import shutil

    from inference.bundle import Bundle
    from inference.query import DEMO_BUNDLE

    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)
    before = (bundle / "bundle.json").read_bytes()
    source = _images(tmp_path / "source", 1200)
    process = _start("inference.enroll", str(source), "--bundle", str(bundle), "--quiet")
    # Started (about 1 s) and encoding: 1,200 images take the network 8 s on the fastest
    # 2-core machine measured (400, as before, were all enrolled within 5 s there).
    time.sleep(3)
    assert process.poll() is None
    err = _stopped(process, signal.SIGINT)
    assert err.strip().splitlines()[-1] == ("stopped by SIGINT: python -m inference.enroll left what it "
                                            "writes as last committed, never half written; run it again "
                                            "to finish")
    assert (bundle / "bundle.json").read_bytes() == before
    assert len(Bundle.load(bundle).titles) == 27
    done = subprocess.run([sys.executable, "-m", "inference.enroll", str(source), "--bundle", str(bundle),
                           "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.startswith("enrolled 1200 images: 6 new titles"), done.stderr


def test_sigterm_during_an_import_leaves_a_catalog_that_a_rerun_completes(tmp_path):
    source = _images(tmp_path / "source", 600, size=64)
    catalog = tmp_path / "catalog.sqlite"
    process = _start("datasets", "import", str(source), "--catalog", str(catalog), "--batch-size", "20",
                     "--quiet")

    def some_committed() -> bool:
        try:
            with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as db:
                return db.execute("SELECT COUNT(*) FROM images").fetchone()[0] > 0
        except sqlite3.Error:
            return False

    _when(lambda: process.poll() is not None or some_committed())
    err = _stopped(process, signal.SIGTERM)
    assert err.strip().splitlines()[-1].startswith("stopped by SIGTERM: python -m datasets left what it")
    with sqlite3.connect(catalog) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = db.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    assert 0 < stored < 600
    rerun = subprocess.run([sys.executable, "-m", "datasets", "import", str(source), "--catalog",
                            str(catalog), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(catalog) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 600


@pytest.mark.parametrize("second_signal", [False, True])
def test_sigterm_during_training_saves_an_epoch_and_prints_the_resume_command(tmp_path, second_signal):
    pytest.importorskip("tensorflow")
    paths = write_manifests(tmp_path, authors=3, titles=2, per_title=8)
    runs = tmp_path / "runs"
    process = _start("training.train", "--preset", "tiny", "--epochs", "40", "--set", "balance.per_label=200",
                     "--set", "train.checkpoint_seconds=0",
                     "--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]),
                     "--out-dir", str(runs), "--name", "stopped", "--quiet")
    state = runs / "stopped" / "state.json"

    def epochs_done() -> int:
        try:
            return json.loads(state.read_text())["epochs_done"]
        except (OSError, ValueError):
            return 0

    _when(lambda: process.poll() is not None or epochs_done() >= 1, timeout=300)
    if second_signal:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.05)
    err = _stopped(process, signal.SIGTERM)
    done = epochs_done()
    assert 1 <= done < 40
    if second_signal:  # at once: no line promised, but what was committed stays resumable
        command = [sys.executable, "-m", "training.train", "--out-dir", str(runs), "--name", "stopped",
                   "--resume", "--quiet"]
    else:
        last = err.strip().splitlines()[-1]
        prefix = f"stopped by SIGTERM after epoch {done} (saved); resume with: "
        assert last.startswith(prefix), last
        command = shlex.split(last[len(prefix):])
        assert command[:3] == ["python", "-m", "training.train"] and command[-1] == "--resume"
        command = [sys.executable, *command[1:], "--epochs", "4" if done < 4 else str(done + 1), "--quiet"]
    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (runs / "stopped" / "bundle" / "bundle.json").is_file()


def test_between_timed_checkpoints_a_stop_still_commits_its_epoch(tmp_path):
    """With commits an hour apart, nothing is written until the stop, which commits the epoch in
    progress; the resumed run ends by committing its last epoch."""
    pytest.importorskip("tensorflow")
    paths = write_manifests(tmp_path, authors=3, titles=2, per_title=8)
    runs = tmp_path / "runs"
    args = ["--preset", "tiny", "--set", "balance.per_label=200", "--set", "train.checkpoint_seconds=3600",
            "--manifest", str(paths["train"]), "--val-manifest", str(paths["val"]), "--out-dir", str(runs),
            "--name", "timed", "--quiet"]
    process = _start("training.train", *args, "--epochs", "40")
    history, state = runs / "timed" / "history.csv", runs / "timed" / "state.json"

    def epochs_logged() -> int:
        try:
            return max(0, len(history.read_text().splitlines()) - 1)
        except OSError:
            return 0

    _when(lambda: process.poll() is not None or epochs_logged() >= 2, timeout=300)
    assert not state.exists(), "committed before an hour had passed"
    _stopped(process, signal.SIGTERM)
    done = json.loads(state.read_text())["epochs_done"]
    assert 2 <= done < 40 and (runs / "timed" / "last.keras").is_file()
    resumed = subprocess.run([sys.executable, "-m", "training.train", *args, "--epochs", str(done + 2),
                              "--resume"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stderr
    assert json.loads(state.read_text())["epochs_done"] == done + 2  # the phase's last epoch


def test_sigterm_during_a_report_keeps_the_previous_report_whole(tmp_path):
    icons = sorted((REPO / "examples" / "icons").glob("*/*/*.png"))
    out = tmp_path / "report"
    first = subprocess.run([sys.executable, "-m", "inference.report", str(icons[0]), "--out", str(out),
                            "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    before = (out / "index.html").read_bytes()
    process = _start("inference.report", *map(str, icons * 4), "--out", str(out), "--quiet")
    time.sleep(4)  # started, and answering: 128 images take about a minute here
    assert process.poll() is None
    err = _stopped(process, signal.SIGTERM)
    assert err.strip().splitlines() == ["stopped by SIGTERM: python -m inference.report left what it writes "
                                        "as last committed, never half written; run it again to finish"]
    assert (out / "index.html").read_bytes() == before  # the previous report, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # nothing half-written beside it
