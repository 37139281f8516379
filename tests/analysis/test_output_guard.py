"""No outputs in git, ever: the notebooks' one normal form, the git filter and the Jupyter pre-save hook
that ``make install`` sets up, each tried the way a person meets it."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import nbformat
import pytest

from kl_sync.analysis.strip import (
    FILTER_COMMAND,
    FILTER_NAME,
    JUPYTER_CONFIG,
    JUPYTER_CONFIG_NAME,
    dumps,
    pre_save_hook,
    strip_notebook,
    strip_text,
)
from tests.analysis.jupyter import REPO, git, scratch_repo

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
SECRET = "customer.with.outputs@example.com"


def executed(path: Path) -> dict:
    """The committed notebook as a run leaves it: outputs (with a customer's e-mail), execution counts,
    the kernel's language_info, and the cell metadata JupyterLab records."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    for count, cell in enumerate(c for c in notebook["cells"] if c["cell_type"] == "code"):
        cell["execution_count"] = count + 1
        cell["outputs"] = [
            {"output_type": "stream", "name": "stdout", "text": [f"{SECRET}\n"]},
            {"output_type": "execute_result", "execution_count": count + 1, "metadata": {},
             "data": {"text/plain": [f"'{SECRET}'"], "text/html": [f"<td>{SECRET}</td>"]}},
        ]
        cell["metadata"]["execution"] = {"iopub.execute_input": "2026-12-01T10:00:00Z"}
        cell["metadata"]["scrolled"] = True
    notebook["metadata"]["language_info"] = {"name": "python", "version": "3.11.9", "mimetype": "text/x-python",
                                             "codemirror_mode": {"name": "ipython", "version": 3}}
    notebook["metadata"]["widgets"] = {"application/vnd.jupyter.widget-state+json": {}}
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_an_executed_notebook_strips_to_the_committed_file_byte_for_byte(path: Path):
    assert strip_text(json.dumps(executed(path))) == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_the_normal_form_is_what_nbformat_writes(path: Path):
    """What the git filter writes (standard library only) and what Jupyter writes after the hook (nbformat) agree."""
    clean = strip_notebook(executed(path))

    assert dumps(clean) == nbformat.writes(nbformat.from_dict(clean)) + "\n"


def test_the_hook_strips_only_notebook_models():
    notebook = executed(NOTEBOOKS[0])
    model = {"type": "notebook", "content": copy.deepcopy(notebook)}
    text_file = {"type": "file", "content": SECRET}

    pre_save_hook(model=model, path="x.ipynb", contents_manager=None)
    pre_save_hook(model=text_file, path="x.txt", contents_manager=None)

    assert model["content"] == strip_notebook(notebook) and SECRET not in json.dumps(model)
    assert text_file["content"] == SECRET


def test_text_that_is_not_a_notebook_passes_unchanged():
    conflicted = '{\n<<<<<<< HEAD\n "cells": []\n=======\n>>>>>>> other\n}\n'

    assert strip_text(conflicted) == conflicted
    assert strip_text("[1, 2]") == "[1, 2]"


def test_make_install_set_up_this_checkout():
    """The filter in this repository's git config and the hook in this environment's Jupyter config."""
    assert git(REPO, "config", "--get", f"filter.{FILTER_NAME}.clean").strip() == FILTER_COMMAND, "run `make install`"
    assert git(REPO, "config", "--get", f"filter.{FILTER_NAME}.required").strip() == "true", "run `make install`"
    assert git(REPO, "config", "--get", f"filter.{FILTER_NAME}.smudge").strip() == "cat", "run `make install`"
    assert git(REPO, "check-attr", "filter", "notebooks/missed_signups.ipynb").strip().endswith(f"filter: {FILTER_NAME}")
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / JUPYTER_CONFIG_NAME
    assert config.is_file(), "run `make install`"
    assert json.loads(config.read_text()) == JUPYTER_CONFIG


def test_git_diffs_and_stages_no_outputs_whatever_wrote_them(tmp_path):
    """A notebook that gained outputs outside Jupyter (another editor, a script): git diff is empty and
    git add stages nothing. (git status lists such a file until it is added: git takes a change of
    size as a change without running the filter; Jupyter's hook keeps the size, see the next test.)"""
    repo = scratch_repo(tmp_path / "repo", [path.name for path in NOTEBOOKS])
    head = git(repo, "rev-parse", "HEAD")
    for path in NOTEBOOKS:
        (repo / "notebooks" / path.name).write_text(json.dumps(executed(path), indent=1), encoding="utf-8")

    assert git(repo, "diff") == ""
    assert git(repo, "diff", cwd=repo / "notebooks") == ""  # git runs the filter from the top of the work tree
    git(repo, "add", "--all")
    assert git(repo, "status", "--porcelain") == "" and git(repo, "diff", "--cached") == ""
    assert git(repo, "rev-parse", "HEAD") == head

    # A real edit still shows, and what is committed of it has no outputs.
    edited = executed(NOTEBOOKS[0])
    edited["cells"][0]["source"] = ["# A new title\n"]
    (repo / "notebooks" / NOTEBOOKS[0].name).write_text(json.dumps(edited), encoding="utf-8")
    assert git(repo, "status", "--porcelain").strip() == f"M notebooks/{NOTEBOOKS[0].name}"
    git(repo, "commit", "--quiet", "-am", "edit")
    committed = git(repo, "show", f"HEAD:notebooks/{NOTEBOOKS[0].name}")
    assert SECRET not in committed and "# A new title" in committed
    assert committed == dumps(strip_notebook(edited))

    # Checking out goes through the filter too (a required one needs its smudge): back and forth.
    git(repo, "checkout", "--quiet", "HEAD~1")
    assert (repo / "notebooks" / NOTEBOOKS[0].name).read_text(encoding="utf-8") == NOTEBOOKS[0].read_text(encoding="utf-8")
    git(repo, "checkout", "--quiet", "-")
    assert git(repo, "status", "--porcelain") == ""


def test_saving_an_executed_notebook_in_jupyterlab_writes_no_outputs_and_leaves_git_clean(jupyter):
    repo = scratch_repo(jupyter.root_dir / "guard", [path.name for path in NOTEBOOKS])

    for path in NOTEBOOKS:
        jupyter.save(repo / "notebooks" / path.name, executed(path))

    for path in NOTEBOOKS:
        on_disk = (repo / "notebooks" / path.name).read_text(encoding="utf-8")
        assert SECRET not in on_disk
        assert on_disk == path.read_text(encoding="utf-8")
    assert git(repo, "status", "--porcelain") == ""
