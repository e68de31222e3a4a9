"""Every command line ends quietly when the reader of its output goes away (`... | head`): no
BrokenPipeError traceback, exit 0 or 141 (128 + SIGPIPE), and what it writes stays whole."""

import shutil
import subprocess
import sys

import pytest

from datasets.cli_exit import EXIT_BROKEN_PIPE
from tests.conftest import REPO

ICONS = sorted((REPO / "examples" / "icons").glob("*/*/*.png"))


def _reader_gone(*args: str) -> subprocess.CompletedProcess:
    """Run `python -m ARGS` with its stdout a pipe whose reader closed before the first write."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    process.stdout.close()
    stderr = process.stderr.read()
    process.wait(timeout=300)
    return subprocess.CompletedProcess(args, process.returncode, None, stderr)


def _quiet(result: subprocess.CompletedProcess) -> None:
    assert result.returncode in (0, EXIT_BROKEN_PIPE), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr


@pytest.mark.parametrize("json_out", [False, True])
def test_similar_into_a_closed_pipe(json_out):
    _quiet(_reader_gone("inference.similar", *map(str, ICONS[:8]), *(["--json"] if json_out else [])))


def test_report_and_enroll_into_a_closed_pipe_leave_their_files_whole(tmp_path):
    from inference.bundle import Bundle
    from inference.query import DEMO_BUNDLE

    out = tmp_path / "report"
    _quiet(_reader_gone("inference.report", *map(str, ICONS[:2]), "--out", str(out), "--quiet"))
    assert (out / "index.html").is_file() and "</html>" in (out / "index.html").read_text()
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO_BUNDLE, bundle)
    source = tmp_path / "source" / "someone" / "their theme"
    source.mkdir(parents=True)
    for icon in ICONS[:3]:
        shutil.copy(icon, source / icon.name)
    _quiet(_reader_gone("inference.enroll", str(tmp_path / "source"), "--bundle", str(bundle), "--quiet"))
    assert "their theme" in [t.name for t in Bundle.load(bundle).titles]


def test_datasets_import_and_stats_into_a_closed_pipe(tmp_path):
    catalog = tmp_path / "catalog.sqlite"
    _quiet(_reader_gone("datasets", "import", str(REPO / "examples" / "icons"), "--catalog", str(catalog)))
    for extra in ([], ["--json"]):
        _quiet(
            _reader_gone(
                "datasets", "stats", "--catalog", str(catalog), "--chart", str(tmp_path / "c.png"), *extra
            )
        )
    from datasets.catalog import Catalog

    with Catalog(catalog) as opened:
        assert len(opened.images()) == len(ICONS)  # the import under a closed pipe is whole
