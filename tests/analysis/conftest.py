"""One JupyterLab server for the analysis tests that save through it (it takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.analysis.jupyter import Jupyter, running_jupyter


@pytest.fixture(scope="session")
def jupyter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    """JupyterLab serving a scratch folder; tests make their repositories under ``jupyter.root_dir``."""
    with running_jupyter(tmp_path_factory.mktemp("jupyter-root"), tmp_path_factory.mktemp("jupyter")) as server:
        yield server
