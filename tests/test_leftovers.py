"""The check .ci/test runs after pytest: processes the suite left running are named and ended,
found by the run's mark in their environment (children re-parented to init included), and
nothing without the mark is touched."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from tests.conftest import REPO

SCRIPT = REPO / ".ci" / "leftovers.py"


def _check(run_id: str, grace: str = "1") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), run_id, "--grace", grace], capture_output=True,
                          text=True, timeout=60)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_an_orphan_left_by_a_run_is_named_and_ended_and_others_are_not_touched():
    run_id = uuid.uuid4().hex
    marked_env = {**os.environ, "STYLEFINDER_TEST_RUN": run_id}
    # A shell that starts a sleeper in the background and exits: the sleeper is re-parented.
    started = subprocess.run(["/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], env=marked_env,
                             capture_output=True, text=True, timeout=30)
    orphan = int(started.stdout.strip())
    bystander = subprocess.Popen(["sleep", "300"],
                                 env={**os.environ, "STYLEFINDER_TEST_RUN": "another run"})
    try:
        assert _alive(orphan)
        result = _check(run_id)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert lines[0] == f"error: left running by the test suite: pid {orphan}: sleep 300"
        assert lines[-1] == "error: 1 processes were left running by the test suite; ended them"
        deadline = time.monotonic() + 10
        while _alive(orphan) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(orphan)
        assert bystander.poll() is None  # another run's process: untouched
        assert _check(run_id).returncode == 0  # nothing left now
    finally:
        bystander.kill()
        bystander.wait()


def test_a_process_on_its_way_out_within_the_grace_is_not_counted():
    run_id = uuid.uuid4().hex
    marked_env = {**os.environ, "STYLEFINDER_TEST_RUN": run_id}
    subprocess.run(["/bin/sh", "-c", "sleep 1 &"], env=marked_env, timeout=30)
    result = _check(run_id, grace="5")
    assert result.returncode == 0 and result.stderr == ""
