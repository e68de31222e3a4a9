"""README's set-up commands stay true: CI runs the test command, and the main job runs."""

import re
import shlex
import shutil
import subprocess
import sys

from tests.conftest import REPO


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    assert tests == "bash .ci/test"
    assert tests in (REPO / ".ci" / "run").read_text()
    script = (REPO / ".ci" / "test").read_text()
    # It sets up a fresh machine by itself: the browser tests' Chromium and driver, then the venv.
    assert "apt-get install" in script and "chromium-driver" in script and "python3-venv" in script
    assert "python3 -m venv .venv" in script and "-m pytest" in script


def test_the_test_command_finds_what_is_missing(tmp_path):
    """The detection half of .ci/test, on a PATH without Chromium, with apt-get and sudo recorded."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("apt-get", "sudo", "id"):
        recorded = f'echo "{tool} $*" >> {log}'
        body = {"id": "echo 1000", "sudo": f'{recorded}; "$@"'}.get(tool, recorded)
        (bin_dir / tool).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    (bin_dir / "python3").symlink_to(sys.executable)
    script = (REPO / ".ci" / "test").read_text().split("[ -x .venv/bin/python ]")[0]
    (tmp_path / "detect.sh").write_text(script)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}  # no chromium, no chromedriver
    result = subprocess.run(["/bin/bash", str(tmp_path / "detect.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "sudo apt-get update -q"
    assert calls[-1].startswith("apt-get install -y -q chromium chromium-driver")


def test_readme_main_job_runs():
    main_job, _ = setup_commands()
    assert 'pip install -q ".[infer]"' in main_job
    steps = [s.strip() for s in main_job.split("&&") if " -m inference.similar " in s]
    assert len(steps) == 1
    argv = shlex.split(steps[0])
    result = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == "examples/icons/matthieu-james/faenza/devices__audio-card.png"
    assert lines[1].startswith("  authors: ") and "similar titles (embedding):" in result.stdout
    assert sum(1 for line in lines if re.match(r"\s+\d+\.\s", line)) == 10
