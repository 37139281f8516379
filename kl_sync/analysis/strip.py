"""No outputs in git, ever: one normal form for notebooks, applied by Jupyter when it saves and by git
when it stages.

An executed notebook holds customer data in its outputs (e-mails, names). Two guards use the same
:func:`strip_notebook`, so both agree byte for byte with what is committed:

* a **Jupyter pre-save hook** (:func:`pre_save_hook`): the project's JupyterLab writes every notebook
  to disk without outputs, autosave included. Jupyter reads no configuration from the working
  directory (its config path is ``jupyter --paths``: the user's folder, the environment's
  ``etc/jupyter``, the system's), and of a ``jupyter_server_config.d/`` fragment it reads only which
  server extensions to load; so this module is a server extension that registers the hook, and
  ``make install`` enables it in the project environment's
  ``.venv/etc/jupyter/jupyter_server_config.d/``, which every ``.venv/bin/jupyter`` reads;
* a **git clean filter** (``.gitattributes``: ``*.ipynb filter=kl-sync-notebook``), set up by
  ``make install`` in the repository's git config: whatever wrote the file (another editor, a
  script), ``git status`` and ``git diff`` compare and ``git add`` stages the stripped form.

The normal form: code cells without outputs and execution counts; cell metadata reduced to its
``tags``; notebook metadata reduced to ``kernelspec`` and the language's name (the kernel rewrites
``language_info`` with its Python version on every run); serialised as nbformat writes notebooks
(sorted keys, one-space indent, source split into lines, a final newline), so a notebook saved by
Jupyter after a run is the very file that was committed.

This module uses the standard library only: git runs it as ``python3 -I kl_sync/analysis/strip.py``
from the top of the work tree, with or without the project's environment.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

FILTER_NAME = "kl-sync-notebook"
#: What git runs to clean a notebook (from the top of the work tree, as git runs filters). Isolated (-I):
#: PYTHONPATH is ignored and this script's folder is not put first on the import path.
FILTER_COMMAND = "python3 -I kl_sync/analysis/strip.py"
#: The Jupyter config fragment ``make install`` writes into the environment.
JUPYTER_CONFIG_NAME = "kl-sync-strip-outputs.json"
JUPYTER_CONFIG = {"ServerApp": {"jpserver_extensions": {"kl_sync.analysis.strip": True}}}

KEPT_CELL_METADATA = ("tags",)
KEPT_NOTEBOOK_METADATA = ("kernelspec", "language_info")
KEPT_LANGUAGE_INFO = ("name",)


def strip_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """The notebook in its committed form (a new dict; ``notebook`` is not changed)."""
    clean = copy.deepcopy(notebook)
    metadata = clean.get("metadata") or {}
    kept = {key: metadata[key] for key in KEPT_NOTEBOOK_METADATA if key in metadata}
    if isinstance(kept.get("language_info"), dict):
        kept["language_info"] = {key: kept["language_info"][key] for key in KEPT_LANGUAGE_INFO if key in kept["language_info"]}
    clean["metadata"] = kept
    for cell in clean.get("cells") or []:
        cell_metadata = cell.get("metadata") or {}
        cell["metadata"] = {key: cell_metadata[key] for key in KEPT_CELL_METADATA if cell_metadata.get(key)}
        if isinstance(cell.get("source"), str):
            cell["source"] = cell["source"].splitlines(True)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    return clean


def dumps(notebook: dict[str, Any]) -> str:
    """Serialised as ``nbformat.write`` does (the test suite checks the two agree)."""
    return json.dumps(notebook, indent=1, sort_keys=True, separators=(",", ": "), ensure_ascii=False) + "\n"


def strip_text(text: str) -> str:
    """A notebook file's text in its committed form. Text that is not a JSON notebook comes back
    unchanged (a file mid-merge with conflict markers must stay what it is; the committed-notebook
    test rejects it)."""
    try:
        notebook = json.loads(text)
    except ValueError:
        return text
    if not isinstance(notebook, dict) or "cells" not in notebook:
        return text
    return dumps(strip_notebook(notebook))


def pre_save_hook(model: dict[str, Any], **_: Any) -> None:
    """Jupyter's ``ContentsManager.pre_save_hook``: strip a notebook model before it is written."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    model["content"] = strip_notebook(model["content"])


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """This module is a Jupyter server extension (enabled by :func:`install`)."""
    return [{"module": "kl_sync.analysis.strip"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    serverapp.contents_manager.register_pre_save_hook(pre_save_hook)
    serverapp.log.info("kl-sync: notebooks are saved without outputs (kl_sync/analysis/strip.py)")


def install(repo: Path, prefix: Path) -> list[str]:
    """Set up both guards: the git filter in ``repo``'s config and the Jupyter hook under ``prefix``
    (an environment's ``sys.prefix``). Idempotent; returns what it did, one line each."""
    import subprocess

    done = []
    # Required, so a clean that fails stops git instead of letting the file through unfiltered; and a
    # required filter needs a smudge too, or every checkout of a notebook fails: committed notebooks
    # are clean already, so checking out passes them through.
    settings = ((f"filter.{FILTER_NAME}.clean", FILTER_COMMAND), (f"filter.{FILTER_NAME}.smudge", "cat"),
                (f"filter.{FILTER_NAME}.required", "true"))
    for key, value in settings:
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    done.append(f"git filter {FILTER_NAME}: {FILTER_COMMAND} (for *.ipynb, see .gitattributes)")
    folder = prefix / "etc" / "jupyter" / "jupyter_server_config.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JUPYTER_CONFIG_NAME).write_text(json.dumps(JUPYTER_CONFIG, indent=2) + "\n", encoding="utf-8")
    done.append(f"Jupyter pre-save hook (server extension kl_sync.analysis.strip): {folder / JUPYTER_CONFIG_NAME}")
    return done


def main(argv: list[str]) -> int:
    if argv == ["install"]:
        for line in install(Path.cwd(), Path(sys.prefix)):
            print(f"notebook guard: {line}")
        return 0
    if argv:
        print("usage: strip.py < notebook.ipynb > stripped.ipynb | strip.py install", file=sys.stderr)
        return 2
    # The git clean filter: the file on stdin, its committed form on stdout (bytes: UTF-8 throughout).
    text = sys.stdin.buffer.read().decode("utf-8")
    sys.stdout.buffer.write(strip_text(text).encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
