"""The Colab notebook runs end to end with SMOKE = True: its code cells, in order, in one namespace."""

import json
import os

import pytest

from tests.conftest import REPO

pytest.importorskip("tensorflow")

NOTEBOOK = REPO / "notebooks" / "train_colab.ipynb"


def code_cells() -> list[str]:
    notebook = json.loads(NOTEBOOK.read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_cells_are_calls_into_the_library():
    for source in code_cells():
        assert "def " not in source and "class " not in source  # no logic lives in the notebook
    assert "SMOKE = True" in code_cells()[0]


def test_smoke_run_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("STYLEFINDER_WORK", str(tmp_path / "work"))
    namespace: dict = {}
    for number, source in enumerate(code_cells()):
        exec(compile(source, f"{NOTEBOOK.name} cell {number}", "exec"), namespace)
    work = tmp_path / "work"
    assert (work / "runs" / "colab" / "bundle" / "model.tflite").is_file()
    assert (work / "runs" / "colab" / "curves.png").is_file()
    assert len(list((work / "report" / "sheets").glob("*.png"))) >= 1
    assert os.getcwd() == str(REPO)
