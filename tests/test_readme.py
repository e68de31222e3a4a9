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


def test_readme_main_job_runs(tmp_path):
    main_job, _ = setup_commands()
    steps = [s.strip() for s in main_job.split("&&") if " -m datasets " in s]
    assert [shlex.split(s)[3] for s in steps] == ["import", "stats"]
    outputs = []
    for step in steps:
        argv = shlex.split(step.replace("data/demo.sqlite", str(tmp_path / "demo.sqlite")))
        result = subprocess.run([sys.executable, *argv[1:]], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout)
    assert "added 32," in outputs[0] and "rejected 0" in outputs[0]
    assert "32 images, 4 titles, 4 authors" in outputs[1]
    assert (tmp_path / "demo.stats.png").stat().st_size > 1000
