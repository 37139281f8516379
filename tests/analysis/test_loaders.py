"""Loaders that need no Klaviyo: the store's customers and the demo's relative paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kl_sync.analysis.loaders import find_repo_root, load_customers, resolve_store_url
from tests.analysis.planted import EMAILS, build_store

REPO = Path(__file__).resolve().parents[2]


def test_customers_load_from_a_store_url(tmp_path):
    build_store(tmp_path / "store.db").dispose()

    frame = load_customers(f"sqlite:///{tmp_path / 'store.db'}")

    assert dict(zip(frame["id"], frame["email"])) == EMAILS
    assert frame.loc[frame["id"] == 2, "box"].isna().all()
    assert pd.api.types.is_datetime64_any_dtype(frame["created_at"])


def test_a_relative_sqlite_store_is_relative_to_the_repository_root(tmp_path):
    (tmp_path / "shop").mkdir()
    build_store(tmp_path / "shop" / "store.db").dispose()

    assert len(load_customers("sqlite:///shop/store.db", tmp_path)) == len(EMAILS)


def test_demo_paths_resolve_against_the_repo_root_from_the_notebooks_folder():
    root = find_repo_root(REPO / "notebooks")

    assert root == REPO
    assert resolve_store_url("sqlite:///.kl_sync/demo/store.db", root) == f"sqlite:///{REPO / '.kl_sync/demo/store.db'}"
    assert resolve_store_url("sqlite:////abs/store.db", root) == "sqlite:////abs/store.db"
    assert resolve_store_url("postgresql://u@h/db", root) == "postgresql://u@h/db"
