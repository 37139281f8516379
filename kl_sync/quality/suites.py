"""The suites as Great Expectations runs them: one ephemeral context per process, every kind's suite
loaded once. GX costs seconds to import, so it is imported here on first use only."""

from __future__ import annotations

import datetime as dt
import json
import threading
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


class _Engine:
    """The process's one ephemeral GX context with every kind's suite loaded."""

    def __init__(self, folder: Path) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

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
