"""The suites as Great Expectations runs them: one ephemeral context per process, every kind's suite
loaded once. GX costs seconds to import, so it is imported here on first use only."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.util
import json
import sys
import threading
import types
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kl_sync.kinds import KINDS, SUITES_DIR

if TYPE_CHECKING:
    import pandas as pd

#: Expectation types evaluated once per distinct value (see :mod:`kl_sync.quality`).
PER_DISTINCT_VALUE = frozenset({"expect_column_values_to_match_json_schema"})


class QualitySuiteError(RuntimeError):
    """A suite could not be loaded or run (a bug in the suite or the flattener, not in the data)."""


def suite_path(kind: str) -> Path:
    return SUITES_DIR / f"{kind}.json"


def expectation_name(expectation_type: str, kwargs: Mapping[str, Any]) -> str:
    """How a failure is named in reports and dead letters: ``type(column)``."""
    return f"{expectation_type}({kwargs.get('column', '')})"


def load_suite_dict(kind: str, folder: Path | None = None) -> dict[str, Any]:
    """The suite file of one kind, as plain JSON (no GX import)."""
    path = (folder or SUITES_DIR) / f"{kind}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QualitySuiteError(f"no expectation suite for outbox kind {kind!r}: {path} is missing") from None
    except json.JSONDecodeError as exc:
        raise QualitySuiteError(f"{path}: not JSON ({exc})") from None


@dataclass
class _KindSuites:
    """One kind's suite as it runs: per-row expectations, plus per-distinct-value ones by column."""

    #: Every expectation's name, in the suite file's order.
    names: list[str]
    rows: Any
    distinct: dict[str, Any]


#: Modules ``import great_expectations`` loads that validation never uses, whose bodies cost seconds:
#: altair (~0.7 s of CPU here), imported at module level by expect_column_kl_divergence_to_be_less_than
#: to draw that expectation's charts in Data Docs, and scipy.stats (~0.7 s), imported by it and by the
#: two KS-test metrics (no suite of ours has any of them). Their bodies run when something first reads
#: one of their attributes (:func:`_defer`).
DEFERRED_MODULES = ("altair", "scipy.stats")

_deferred_lock = threading.RLock()


class _RunsOnFirstUse(types.ModuleType):
    """A module in ``sys.modules`` whose body has not run yet; it runs on the first read of an
    attribute other than ``__spec__``. importlib.util.LazyLoader's modules run on any attribute, and
    the ``import`` statement itself reads ``__spec__`` (Python 3.11), so ``import altair`` would run it."""

    def __getattribute__(self, attr: str) -> Any:
        if attr == "__spec__":
            return object.__getattribute__(self, attr)
        with _deferred_lock:  # other threads wait for the body; the thread running it reads what is there
            if type(self) is _RunsOnFirstUse and not object.__getattribute__(self, "__dict__").get("_kl_sync_running"):
                self._kl_sync_running = True
                try:
                    object.__getattribute__(self, "__spec__").loader.exec_module(self)
                finally:
                    del self._kl_sync_running
                self.__class__ = types.ModuleType
        return types.ModuleType.__getattribute__(self, attr)


def _defer(name: str) -> None:
    """Make ``import name`` cheap: the module's body runs on its first use (:class:`_RunsOnFirstUse`)."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
        return
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _RunsOnFirstUse
    sys.modules[name] = module


def _iri_syntax_on_first_use() -> types.ModuleType | None:
    """A stand-in for ``rfc3987_syntax`` while jsonschema is imported, or None if none is needed.

    jsonschema's ``iri`` and ``iri-reference`` format checkers take ``is_valid_syntax`` from
    rfc3987_syntax when jsonschema is imported, and rfc3987_syntax compiles a Lark grammar at import
    (~0.5 s of CPU here); no suite of ours asks for those formats. A deferred module cannot help
    (taking a name from it runs it), so jsonschema gets this stand-in instead: the same checkers get
    registered, and the first iri checked imports the real module (no longer shadowed) and asks it.
    """
    if "jsonschema" in sys.modules or "rfc3987_syntax" in sys.modules:
        return None
    if importlib.util.find_spec("rfc3987_syntax") is None or importlib.util.find_spec("lark") is None:
        return None  # jsonschema registers no iri checker then, as without the stand-in

    def is_valid_syntax(term: str, value: str) -> bool:
        return importlib.import_module("rfc3987_syntax").is_valid_syntax(term, value)

    stand_in = types.ModuleType("rfc3987_syntax", "Forwards to the real rfc3987_syntax, imported on first use.")
    stand_in.is_valid_syntax = is_valid_syntax  # type: ignore[attr-defined]
    return stand_in


def _import_gx() -> None:
    """``import great_expectations`` without running what validation does not use (above)."""
    if "great_expectations" in sys.modules:
        return
    for name in DEFERRED_MODULES:
        _defer(name)
    stand_in = _iri_syntax_on_first_use()
    if stand_in is not None:
        sys.modules["rfc3987_syntax"] = stand_in
    try:
        import great_expectations  # noqa: F401
        import jsonschema  # noqa: F401  (GX imports it; its format checkers now hold the stand-in)
    finally:
        if stand_in is not None and sys.modules.get("rfc3987_syntax") is stand_in:
            del sys.modules["rfc3987_syntax"]


class _Engine:
    """The process's one ephemeral GX context with every kind's suite loaded."""

    def __init__(self, folder: Path) -> None:
        _import_gx()
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )
        from great_expectations.execution_engine import pandas_execution_engine

        # GX fingerprints every in-memory frame smaller than HASH_THRESHOLD bytes (pandas' hash of every
        # row, then md5) for the batch's markers, twice per Batch.validate (our get_batch and the one the
        # validator makes from its batch parameters): a third of validating a 20k-row frame. Nothing here
        # reads it (Data Docs files a result by its batch id, as ValidationDefinition.run does), and GX
        # leaves it out for frames at or above the threshold: at 0, for every frame.
        pandas_execution_engine.HASH_THRESHOLD = 0
        self.lock = threading.Lock()
        self.context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(),
                progress_bars=ProgressBarsConfig(globally=False),
            ),
        )
        self.batch_definition = (
            self.context.data_sources.add_pandas("outbox")
            .add_dataframe_asset("payloads")
            .add_batch_definition_whole_dataframe("batch")
        )
        self.kinds: dict[str, _KindSuites] = {kind: self._load(folder, kind) for kind in KINDS}

    def _load(self, folder: Path, kind: str) -> _KindSuites:
        """One kind's suite file, checked and split into per-row and per-distinct-value suites."""
        import great_expectations as gx

        path = folder / f"{kind}.json"
        try:
            suite = gx.ExpectationSuite(**load_suite_dict(kind, folder))
        except QualitySuiteError:
            raise
        except Exception as exc:  # GX raises pydantic and its own errors alike for a bad file
            raise QualitySuiteError(f"{path}: GX cannot load it: {exc}") from exc
        if suite.name != kind:
            raise QualitySuiteError(f"{path}: suite name {suite.name!r} is not {kind!r}")
        names, per_row, per_value = _split(path, suite.expectations)
        # Added to the context only so Data Docs can render them; validation takes them directly.
        add = self.context.suites.add
        return _KindSuites(
            names=names,
            rows=add(gx.ExpectationSuite(name=kind, expectations=per_row)),
            distinct={
                column: add(gx.ExpectationSuite(name=f"{kind}_distinct_{column}", expectations=expectations))
                for column, expectations in per_value.items()
            },
        )

    def run(self, suite: Any, frame: pd.DataFrame, parameters: dict[str, Any]) -> Any:
        """Validate ``frame`` against ``suite``; unexpected rows come back as positions in ``frame``."""
        # Batch.validate, not ValidationDefinition.run: the latter serializes every result into the
        # context's store, which costs more than the validation itself when many rows fail.
        from great_expectations.core.run_identifier import RunIdentifier

        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format="COMPLETE", expectation_parameters=parameters)
        # What ValidationDefinition.run records too, so Data Docs can file and date the result.
        run_id = RunIdentifier(run_name=suite.name, run_time=dt.datetime.now(dt.timezone.utc))
        result.meta["run_id"] = run_id
        result.meta["validation_time"] = run_id.run_time
        return result


def _split(path: Path, expectations: list[Any]) -> tuple[list[str], list[Any], dict[str, list[Any]]]:
    """A suite's expectations as (names in file order, per-row ones, per-distinct-value ones by column);
    refuses what cannot give a verdict per row, and a name that appears twice."""
    from great_expectations.expectations.expectation import ColumnMapExpectation

    names: list[str] = []
    per_row: list[Any] = []
    per_value: dict[str, list[Any]] = {}
    for expectation in expectations:
        config = expectation.configuration
        name = expectation_name(config.type, config.kwargs)
        if not isinstance(expectation, ColumnMapExpectation):
            raise QualitySuiteError(f"{path}: {name} does not judge rows one by one (not a column map expectation)")
        if name in names:
            raise QualitySuiteError(f"{path}: {name} appears twice; failures could not tell them apart")
        names.append(name)
        if config.type in PER_DISTINCT_VALUE:
            per_value.setdefault(config.kwargs["column"], []).append(expectation)
        else:
            per_row.append(expectation)
    return names, per_row, per_value


_engine_lock = threading.Lock()
_engines: dict[Path, _Engine] = {}


def engine(folder: Path | None = None) -> _Engine:
    folder = (folder or SUITES_DIR).resolve()
    with _engine_lock:
        if folder not in _engines:
            _engines[folder] = _Engine(folder)
        return _engines[folder]
