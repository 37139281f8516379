"""The package surface: every exported name exists, and importing it pulls in neither Prefect nor pandas."""

from __future__ import annotations

import subprocess
import sys

import kl_sync.klaviyo as klaviyo


def test_every_exported_name_exists() -> None:
    missing = [name for name in klaviyo.__all__ if not hasattr(klaviyo, name)]
    assert missing == []


def test_importing_the_client_imports_no_prefect_and_no_pandas() -> None:
    code = "import sys, kl_sync.klaviyo; print(sorted({'prefect', 'pandas', 'great_expectations'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
