"""README's set-up commands stay true: CI runs the test command, and the main job runs."""

import re
import shlex
import subprocess
import sys

from tests.conftest import REPO


def setup_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.S)


def test_ci_runs_the_readme_test_command():
    _, tests = setup_commands()
    assert "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()


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
