"""``make report``: run the notebooks headless and write each as HTML, for people who read, not run.

Each notebook runs in ``notebooks/`` (as Jupyter runs it) on kl-sync's settings, and its HTML, with
the figures and tables but not the code, goes to the store's analysis folder (the demo's:
``.kl_sync/demo/analysis/``), beside the CSVs the notebooks write. Nothing is pushed to Klaviyo
(``push_to_klaviyo`` keeps its default) and the notebooks in ``notebooks/`` are not modified.

With no Klaviyo settings the notebooks read the demo's account; the report then serves that account
itself for the run (through the same factory as ``kl-sync sync``), so ``make demo`` then
``make report`` works without starting ``kl-sync emulator`` first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from kl_sync.analysis.notebook import NotebookStop, find_repo_root, notebook_settings

NOTEBOOKS = ("missed_signups.ipynb", "duplicate_analysis.ipynb", "klaviyo_vs_store.ipynb")
#: Seconds one cell may run.
CELL_TIMEOUT = 600


def execute_notebook(
    path: Path, parameters: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None, timeout: int = CELL_TIMEOUT
) -> Any:
    """Run the notebook at ``path`` in its folder and return it with its outputs (the file is not
    changed). ``parameters`` go in a cell after the one tagged ``parameters``, as papermill does;
    ``env`` is added to the kernel's environment, where the notebook reads its settings."""
    notebook = nbformat.read(path, as_version=4)
    if parameters:
        [index] = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
        injected = nbformat.v4.new_code_cell("\n".join(f"{key} = {value!r}" for key, value in parameters.items()))
        injected.metadata["tags"] = ["injected-parameters"]
        notebook.cells.insert(index + 1, injected)
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(**({"env": {**os.environ, **env}} if env else {}))
    except CellExecutionError as exc:
        # The failing cell's one line (a NotebookStop is one line already), not the whole traceback.
        raise NotebookStop(f"{path.name}: {exc.ename}: {exc.evalue}" if exc.ename != "NotebookStop" else f"{path.name}: {exc.evalue}") from None
    return notebook


def to_html(notebook: Any) -> str:
    """The executed notebook as a page to read: markdown, figures and tables, without the code."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(notebook)
    return body


def write_report(
    root: Path, names: Sequence[str] = NOTEBOOKS, output_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> list[Path]:
    """Execute ``notebooks/<name>`` for each name (``env`` added to the kernels' environment) and write
    ``<output_dir>/<stem>.html``; the HTML paths."""
    output = output_dir or root / notebook_settings(root).output_dir
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names:
        path = root / "notebooks" / name
        if not path.is_file():
            raise NotebookStop(f"no notebook {path}")
        page = output / f"{path.stem}.html"
        page.write_text(to_html(execute_notebook(path, env=env)), encoding="utf-8")
        written.append(page)
    return written


@contextmanager
def klaviyo_for_report(root: Path) -> Iterator[dict[str, str]]:
    """The environment the notebooks' kernels need: none when Klaviyo is configured; with nothing
    configured, the demo's account served for the run by kl-sync's own factory."""
    from kl_sync.constants import KLAVIYO_BASE_URL
    from kl_sync.settings import DEMO_DIR, EMULATOR_KEY, load_settings

    settings = load_settings(_env_file=root / ".env")
    if settings.api_key() is not None or settings.klaviyo_base_url != KLAVIYO_BASE_URL:
        yield {}
        return
    if not (root / DEMO_DIR / "emulator").is_dir():
        raise NotebookStop(f"no demo account at {DEMO_DIR / 'emulator'}: run `make demo` first (or set KLAVIYO_BASE_URL)")
    from kl_sync.app.clients import klaviyo_client

    with klaviyo_client(settings) as client:
        yield {"KLAVIYO_BASE_URL": client.base_url, "KLAVIYO_API_KEY": EMULATOR_KEY}


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or list(NOTEBOOKS)
    root = find_repo_root()
    os.chdir(root)  # kl-sync's relative defaults (.kl_sync/...) are relative to the repository's root
    try:
        with klaviyo_for_report(root) as env:
            for page in write_report(root, names, env=env):
                print(f"make report: wrote {page.relative_to(root) if page.is_relative_to(root) else page}")
    except NotebookStop as exc:
        print(f"make report: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
