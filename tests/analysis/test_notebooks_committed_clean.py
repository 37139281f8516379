"""Committed notebooks carry no outputs and no execution counts, are in the guard's normal form (so a
save after a run changes nothing), and have one ``parameters`` cell that defaults to kl-sync's settings."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from kl_sync.analysis.strip import strip_text

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_the_analysis_notebooks_are_there():
    assert {path.name for path in NOTEBOOKS} == {"duplicate_analysis.ipynb", "missed_signups.ipynb", "klaviyo_vs_store.ipynb"}


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
    text = path.read_text(encoding="utf-8")
    assert strip_text(text) == text, f"{path.name}: not in the normal form (python3 kl_sync/analysis/strip.py < it)"
    assert all(cell.get("id") for cell in notebook.cells), "cells keep stable ids, or Jupyter adds random ones on save"
    tagged = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", f"{path.name}: needs exactly one code cell tagged 'parameters'"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_parameter_defaults_are_kl_syncs_settings(path: Path, monkeypatch: pytest.MonkeyPatch):
    from kl_sync.analysis.notebook import notebook_settings

    monkeypatch.setenv("KLAVIYO_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_from_the_environment")
    monkeypatch.setenv("KL_SYNC_STORE_URL", "sqlite:///elsewhere/store.db")
    notebook = nbformat.read(path, as_version=4)
    [cell] = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    defaults: dict[str, object] = {}
    exec(cell.source, defaults)  # the cell only assigns values from the settings

    settings = notebook_settings()
    assert defaults["klaviyo_base_url"] == "http://127.0.0.1:9" == settings.klaviyo_base_url
    assert defaults["klaviyo_api_key"] == "pk_from_the_environment"
    assert defaults["output_dir"] == "elsewhere/analysis"
    if "store_url" in defaults:
        assert defaults["store_url"] == "sqlite:///elsewhere/store.db"
    assert "8765" not in cell.source and "pk_local_emulator" not in cell.source
