import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None,
            check_exit: int | None = None) -> subprocess.CompletedProcess:
    """Run `python -m <args>` from the repository root, as a user would."""
    result = subprocess.run([sys.executable, "-m", *args], cwd=cwd or REPO, capture_output=True,
                            text=True, timeout=300)
    if check_exit is not None:
        assert result.returncode == check_exit, result.stdout + result.stderr
    return result


@pytest.fixture
def cli():
    return run_cli
