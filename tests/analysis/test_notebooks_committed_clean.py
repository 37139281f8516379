"""Committed notebooks carry no outputs, no execution counts, and a ``parameters`` cell."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_analysis_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} >= {"duplicate_analysis.ipynb", "missed_signups.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_is_stripped_and_parameterised(path: Path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)

    dirty = [
        index
        for index, cell in enumerate(notebook.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: needs exactly one code cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_parameter_defaults_point_at_the_demo(path: Path, monkeypatch: pytest.MonkeyPatch):
    from kl_sync.settings import DEFAULT_STORE_URL, EMULATOR_KEY

    monkeypatch.delenv("KLAVIYO_API_KEY", raising=False)
    notebook = nbformat.read(path, as_version=4)
    [cell] = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    defaults: dict[str, object] = {}
    exec(cell.source, defaults)  # the cell only assigns values and reads the environment

    assert defaults["klaviyo_api_key"] == EMULATOR_KEY
    assert defaults["klaviyo_base_url"] == "http://127.0.0.1:8765"
    assert defaults["output_dir"] == ".kl_sync/demo/analysis"
    if "store_url" in defaults:
        assert defaults["store_url"] == DEFAULT_STORE_URL
