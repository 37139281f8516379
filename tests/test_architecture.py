"""ARCHITECTURE.md kept true: the paths it names exist, every outbox kind has all of its parts, and
no layer reaches above itself."""

from __future__ import annotations

import ast
import inspect
import re
import typing
from pathlib import Path

import pytest

from kl_sync.kinds import KINDS
from kl_sync.klaviyo.limits import ENDPOINT_LIMITS
from kl_sync.pipeline import STORE_STEPS

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "kl_sync"
MAP = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
GROUND_FLOOR = ("settings", "retry", "constants", "normalize", "chunks", "payloads", "db", "failures")


def test_every_path_the_map_names_exists():
    named = {token for token in re.findall(r"`([^`\s]+)`", MAP) if "/" in token or token.endswith(".py")}
    assert len(named) > 20
    for token in sorted(named):
        path = token.split("<", 1)[0]  # a templated name: its folder must exist
        assert (REPO / path).exists(), f"ARCHITECTURE.md names {token}, which is not in the tree"


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_has_all_of_its_parts(name):
    import kl_sync.emulator

    kind = KINDS[name]
    operation = kind.operation
    assert kind.suite.is_file(), f"{name}: no suite at {kind.suite}"
    assert typing.is_typeddict(kind.payload), f"{name}: its payload shape is not a TypedDict"
    assert callable(kind.columns) and callable(operation.build) and callable(operation.send)
    assert callable(operation.preview) and callable(operation.input_of)
    assert ENDPOINT_LIMITS.get(operation.endpoint.operation_id) is operation.endpoint
    assert operation.items_per_request == operation.endpoint.max_items
    spec = Path(kl_sync.emulator.__file__).parent / "spec" / f"{operation.endpoint.operation_id}.json"
    assert spec.is_file(), f"{name}: no spec slice for {operation.endpoint.operation_id}"
    if kind.verifier is not None:  # it reads back through an endpoint of its own, which the emulator serves
        read = kind.verifier.endpoint
        assert ENDPOINT_LIMITS.get(read.operation_id) is read and read.method == "GET" and callable(kind.verifier.find)
        assert (spec.parent / f"{read.operation_id}.json").is_file(), f"{name}: no spec slice for {read.operation_id}"


@pytest.mark.parametrize("operation_id", sorted({k.operation.endpoint.operation_id for k in KINDS.values()}))
def test_the_emulator_serves_every_operation_the_kinds_send(emulator, operation_id):
    import requests

    endpoint = ENDPOINT_LIMITS[operation_id]
    answer = requests.request(endpoint.method, emulator.base_url + endpoint.path, json={}, timeout=10, headers={
        "Authorization": f"Klaviyo-API-Key {emulator.api_key}", "revision": "2026-07-15",
        "Content-Type": "application/vnd.api+json"})
    # An empty body is refused as Klaviyo refuses it: the route exists and checks its body.
    assert answer.status_code == 400, (operation_id, answer.status_code, answer.text[:200])


def test_every_step_queues_registered_kinds():
    for step in STORE_STEPS.values():
        assert step.kinds and set(step.kinds) <= set(KINDS), step.name


def test_one_retry_policy_feeds_the_client_and_the_sender():
    from kl_sync.klaviyo.client import KlaviyoClient
    from kl_sync.retry import OUTBOX_RETRIES, REQUEST_RETRIES, RetryPolicy
    from kl_sync.settings import load_settings
    from kl_sync.steps.send import send_outbox

    assert inspect.signature(KlaviyoClient).parameters["retries"].default is REQUEST_RETRIES
    assert inspect.signature(send_outbox).parameters["retries"].default is OUTBOX_RETRIES
    assert load_settings().retry == RetryPolicy()


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at module level or inside functions, absolute names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path.relative_to(REPO).as_posix(), _imports(path)


def _reaches(imports: set[str], *prefixes: str) -> list[str]:
    return sorted(name for name in imports if any(name == p or name.startswith(p + ".") for p in prefixes))


def test_nothing_below_the_app_layer_reaches_flows_prefect_or_the_emulator():
    for name, imports in _modules(PACKAGE):
        if name.startswith(("kl_sync/app/", "kl_sync/emulator/")) or name == "kl_sync/__main__.py":
            continue  # the edges (``python -m kl_sync`` is the CLI's), and the stand-in itself
        assert not _reaches(imports, "flows", "prefect", "kl_sync.app", "kl_sync.emulator"), name


def test_only_flows_import_prefect():
    # The app layer starts a flow by importing flows/ (lazily); Prefect itself stays there.
    for name, imports in _modules(PACKAGE):
        assert not _reaches(imports, "prefect"), name


def test_state_tables_are_queried_only_in_state():
    for name, imports in _modules(PACKAGE):
        if not name.startswith("kl_sync/state/"):
            assert not _reaches(imports, "kl_sync.state.tables"), name


def test_analysis_and_onsite_do_not_import_the_steps():
    for name, imports in _modules(PACKAGE):
        if name.startswith(("kl_sync/analysis/", "kl_sync/onsite/")):
            assert not _reaches(imports, "kl_sync.steps", "kl_sync.pipeline"), name


def test_the_ground_floor_imports_only_the_ground_floor():
    allowed = {f"kl_sync.{module}" for module in GROUND_FLOOR}
    for module in GROUND_FLOOR:
        imports = _imports(PACKAGE / f"{module}.py")
        inside = {name for name in _reaches(imports, "kl_sync") if name not in allowed}
        assert not {name for name in inside if name.rsplit(".", 1)[0] not in allowed}, (module, inside)
