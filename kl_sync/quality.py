"""Data quality: every outbox payload passes its Great Expectations suite before it reaches Klaviyo.

The suites are plain JSON, one per outbox kind, in ``expectations/<kind>.json``. A batch of outbox
rows of one kind is flattened into a DataFrame (one row per outbox row, one column per thing a suite
checks) and validated, and every row comes back either passed or failed with the names of the
expectations it broke (``expect_column_values_to_match_regex(email)``), ready to be a dead
letter's reason.

Great Expectations costs seconds to import, so it is imported on first use, never at module import;
the context (ephemeral, in memory) and the suites are built once per process and reused.

Every expectation in a suite must be a column map expectation (one verdict per value, so per row).
Expectations whose per-value cost is high (``expect_column_values_to_match_json_schema``: jsonschema
re-checks the schema itself on every call, milliseconds each) are run over the column's distinct
values instead, and each verdict is copied to the rows holding that value; the result is the same,
only cheaper when values repeat (order Items do).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kl_sync.payloads import EVENT_KINDS, OUTBOX_KINDS

if TYPE_CHECKING:
    import pandas as pd

#: Where the suites live: ``expectations/<kind>.json`` at the repository root, beside ``kl_sync/``.
SUITES_DIR = Path(__file__).resolve().parent.parent / "expectations"

#: Klaviyo accepts event times up to one year ahead; the suites get ``now + TIME_HORIZON``.
TIME_HORIZON = dt.timedelta(days=365)

#: Values walked per payload before making sure it has no cycle (a walk over a cycle never ends).
#: Far above any real payload, so the check (a full ``json.dumps``) almost never runs.
_VALUES_BEFORE_CYCLE_CHECK = 100_000

#: The failure given to a row whose payload cannot be turned into a row of the frame at all.
UNFLATTENABLE = "payload is not flattenable"

#: Expectation types evaluated once per distinct value (see the module docstring).
PER_DISTINCT_VALUE = frozenset({"expect_column_values_to_match_json_schema"})

#: Compact JSON, built once: ``json.dumps`` with any non-default option builds a new encoder per call.
#: ``scan_payload`` has already refused NaN and cycles by the time it is used.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)


class QualitySuiteError(RuntimeError):
    """A suite could not be loaded or run (a bug in the suite or the flattener, not in the data)."""


class UnflattenablePayload(ValueError):
    """The payload's shape is too broken to check field by field; the message says why."""


# ----------------------------------------------------------------------------- reports


@dataclass(frozen=True)
class QualityReport:
    """What one validated batch came to: every row key is either in ``passed_keys`` or ``failures``."""

    kind: str
    rows: int
    #: Row key -> the expectations it broke, in suite order (or the one ``UNFLATTENABLE`` reason).
    failures: dict[str, list[str]]
    passed_keys: list[str]
    #: Every expectation of the suite -> rows that broke it (0 included); plus ``UNFLATTENABLE`` if any.
    by_expectation: dict[str, int]
    #: The GX validation results behind this report, for :func:`build_data_docs`.
    validations: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    @property
    def failed_keys(self) -> list[str]:
        return list(self.failures)

    @property
    def success(self) -> bool:
        return not self.failures

    def reason(self, key: str) -> str:
        """The failures of one row as one line, for a dead letter."""
        return "; ".join(self.failures[key])

    def summary_rows(self, examples: int = 3) -> list[dict[str, Any]]:
        """One row per check, for a table artifact: kind, check, failed rows, a few failing keys."""
        keys_by_check: dict[str, list[str]] = {}
        for key, names in self.failures.items():
            for name in names:
                check = UNFLATTENABLE if name.startswith(UNFLATTENABLE) else name
                found = keys_by_check.setdefault(check, [])
                if len(found) < examples:
                    found.append(key)
        return [
            {
                "kind": self.kind,
                "check": check,
                "failed_rows": count,
                "example_keys": ", ".join(keys_by_check.get(check, [])),
            }
            for check, count in self.by_expectation.items()
        ]


# ----------------------------------------------------------------------------- flattening


@dataclass(frozen=True)
class FlatBatch:
    """A batch as the suites see it: ``frame`` has a ``key`` column and one row per flattenable row."""

    kind: str
    frame: pd.DataFrame
    #: Row key -> why its payload could not be flattened.
    unflattenable: dict[str, str]


def _object(container: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    """``container[name]`` as a mapping; absent or null counts as empty, anything else is unflattenable."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnflattenablePayload(f"{where}{name} is a {type(value).__name__}, not an object")
    return value


def scan_payload(payload: Any) -> int:
    """UTF-8 size of the longest string (key or value) anywhere in ``payload``.

    Raises :class:`UnflattenablePayload` if the payload holds a value JSON cannot carry (a Decimal,
    a datetime, NaN or Infinity) or refers to itself: the sender would fail on it, or send invalid
    JSON that Klaviyo rejects together with the rest of its batch. A value shared by two places is
    fine (it is walked twice). Keys are not type-checked: payloads decoded from JSON only have str keys.
    """
    # A flat loop with exact type tests: this runs for every value of every row (~80 in an order
    # event), so it is the flattener's hot spot. Subclasses (IntEnum, OrderedDict) take the slow branch.
    longest = 0
    stack = [payload]
    pop, extend = stack.pop, stack.extend
    budget = _VALUES_BEFORE_CYCLE_CHECK
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            size = len(item)
            # n characters are n..4n bytes: skip the encode when the string cannot be the longest.
            if size * 4 > longest:
                if not item.isascii():
                    size = len(item.encode("utf-8", "surrogatepass"))
                if size > longest:
                    longest = size
        elif kind is dict:
            extend(item)
            extend(item.values())
        elif kind is list:
            extend(item)
        elif kind is int or kind is bool or item is None:
            pass
        elif kind is float:
            if not math.isfinite(item):
                raise UnflattenablePayload(f"payload holds {item!r}, which JSON cannot carry")
        elif isinstance(item, str):
            stack.append(str.__str__(item))
        elif isinstance(item, dict):
            extend(item)
            extend(item.values())
        elif isinstance(item, (list, tuple)):
            extend(item)
        elif isinstance(item, float):
            stack.append(float(item))
        elif not isinstance(item, int):
            raise UnflattenablePayload(f"payload holds a {kind.__name__}, which is not JSON")
        budget -= 1
        if budget == 0:
            _refuse_cycles(payload)
    return longest


def _refuse_cycles(payload: Any) -> None:
    try:
        json.dumps(payload)
    except ValueError as exc:  # json raises ValueError("Circular reference detected") for a cycle
        raise UnflattenablePayload(f"payload refers to itself ({exc})") from None
    except TypeError as exc:  # a non-JSON value the walk has not reached yet
        raise UnflattenablePayload(f"payload is not JSON ({exc})") from None


def json_type(value: Any) -> str | None:
    """The JSON type of a value as the ``*_type`` columns hold it: null for absent or null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    return "array"


def _event_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    properties = _object(payload, "properties", "")
    profile = _object(payload, "profile", "")
    profile_properties = _object(profile, "properties", "profile.")
    time = payload.get("time")
    value = payload.get("value")
    number = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            raise UnflattenablePayload(f"value {value} is too large for a number") from None
    items = properties.get("Items")
    return {
        "email": profile.get("email"),
        "metric": payload.get("metric"),
        "time": time,
        "time_text": time if isinstance(time, str) else None,
        "unique_id": payload.get("unique_id"),
        "unique_id_type": json_type(payload.get("unique_id")),
        "backfill_type": json_type(payload.get("backfill")),
        "value": number,
        "value_type": json_type(value),
        "value_currency": payload.get("value_currency"),
        "property_count": len(properties),
        "status": profile_properties.get("Status"),
        "order_id": properties.get("OrderId"),
        "product_id": properties.get("ProductID"),
        "items_json": None if items is None else _COMPACT_JSON.encode(items),
    }


def _profile_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    properties = _object(payload, "properties", "")
    return {
        "email": payload.get("email"),
        "status": properties.get("Status"),
        "property_count": len(properties),
        "payload_bytes": len(_COMPACT_JSON.encode(payload).encode("utf-8", "surrogatepass")),
    }


def _suppression_columns(payload: Mapping[str, Any]) -> dict[str, Any]:
    return {"email": payload.get("email")}


_COLUMNS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    **{kind: _event_columns for kind in EVENT_KINDS},
    "profile": _profile_columns,
    "suppression": _suppression_columns,
}


def flatten_batch(kind: str, rows: Iterable[tuple[str, Any]]) -> FlatBatch:
    """Turn ``(key, payload)`` rows of one kind into the frame its suite checks. Pure: reads only.

    Columns (by kind): ``key``, ``email``, ``max_string_bytes``; events add ``metric``, ``time`` (as
    sent), ``time_parsed`` (UTC instant, null if unparseable), ``unique_id``, ``value`` (float, NaN
    unless a number), ``value_currency``, ``property_count``, ``status``, the JSON types
    (:func:`json_type`) ``unique_id_type``, ``value_type``, ``backfill_type``
    (profile.properties.Status), ``order_id``, ``product_id``, ``items_json`` (properties.Items as
    JSON text); profiles add ``status``, ``property_count``, ``payload_bytes``.
    """
    import pandas as pd

    if kind not in _COLUMNS:
        raise ValueError(f"unknown outbox kind {kind!r} (known: {', '.join(OUTBOX_KINDS)})")
    columns_of = _COLUMNS[kind]
    records: list[dict[str, Any]] = []
    unflattenable: dict[str, str] = {}
    for key, payload in rows:
        try:
            if not isinstance(payload, Mapping):
                raise UnflattenablePayload(f"payload is a {type(payload).__name__}, not an object")
            longest = scan_payload(payload)
            record = columns_of(payload)
        except UnflattenablePayload as exc:
            unflattenable[key] = str(exc)
            continue
        record["key"] = key
        record["max_string_bytes"] = longest
        records.append(record)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"key": pd.Series([], dtype=str)})
    if "time_text" in frame:
        # Offsets differ row to row (DST); utc=True turns them all into one instant column.
        frame["time_parsed"] = pd.to_datetime(frame.pop("time_text"), utc=True, format="ISO8601", errors="coerce")
    if "value" in frame:
        frame["value"] = frame["value"].astype("float64")
    return FlatBatch(kind=kind, frame=frame, unflattenable=unflattenable)


# ----------------------------------------------------------------------------- suites and context


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
        from great_expectations.expectations.expectation import ColumnMapExpectation

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
        self.kinds: dict[str, _KindSuites] = {}
        for kind in OUTBOX_KINDS:
            path = folder / f"{kind}.json"
            try:
                suite = gx.ExpectationSuite(**load_suite_dict(kind, folder))
            except QualitySuiteError:
                raise
            except Exception as exc:  # GX raises pydantic and its own errors alike for a bad file
                raise QualitySuiteError(f"{path}: GX cannot load it: {exc}") from exc
            if suite.name != kind:
                raise QualitySuiteError(f"{path}: suite name {suite.name!r} is not {kind!r}")
            names: list[str] = []
            per_row: list[Any] = []
            per_value: dict[str, list[Any]] = {}
            for expectation in suite.expectations:
                config = expectation.configuration
                name = expectation_name(config.type, config.kwargs)
                if not isinstance(expectation, ColumnMapExpectation):
                    raise QualitySuiteError(
                        f"{path}: {name} does not judge rows one by one (not a column map expectation)"
                    )
                if name in names:
                    raise QualitySuiteError(f"{path}: {name} appears twice; failures could not tell them apart")
                names.append(name)
                if config.type in PER_DISTINCT_VALUE:
                    per_value.setdefault(config.kwargs["column"], []).append(expectation)
                else:
                    per_row.append(expectation)
            # Added to the context only so Data Docs can render them; validation takes them directly.
            add = self.context.suites.add
            self.kinds[kind] = _KindSuites(
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


_engine_lock = threading.Lock()
_engines: dict[Path, _Engine] = {}


def _engine(folder: Path | None = None) -> _Engine:
    folder = (folder or SUITES_DIR).resolve()
    with _engine_lock:
        if folder not in _engines:
            _engines[folder] = _Engine(folder)
        return _engines[folder]


def _raised(result: Any) -> str | None:
    """The message of an exception GX caught while running one expectation, if it caught one."""
    info = result.exception_info or {}
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return str(entry.get("exception_message") or "unknown error")
    return None


def _unexpected(kind: str, result: Any) -> tuple[str, list[int]]:
    """(expectation name, positions of the unexpected rows) of one expectation result; raise if it did not run."""
    config = result.expectation_config
    name = expectation_name(config.type, config.kwargs)
    message = _raised(result)
    if message is not None:
        raise QualitySuiteError(f"{kind}: {name} could not run: {message}")
    entries = result.result.get("unexpected_index_list") or []
    if not result.success and not entries:
        # A failure that names no row (an aggregate check) cannot become a per-row verdict.
        raise QualitySuiteError(f"{kind}: {name} failed without naming the rows that broke it")
    return name, [int(position) for position in entries]


# ----------------------------------------------------------------------------- validation


def validate_batch(
    kind: str,
    rows: Sequence[tuple[str, Any]],
    *,
    metric_names: Collection[str],
    now: dt.datetime | None = None,
    suites_dir: Path | None = None,
) -> QualityReport:
    """Check ``(key, payload)`` rows of one outbox kind against ``expectations/<kind>.json``.

    ``metric_names`` is the configured set of metric names for this kind (unused by the profile and
    suppression suites); ``now`` (tz-aware, default: the current time) bounds how far ahead an event
    time may be; ``suites_dir`` replaces :data:`SUITES_DIR`. Raises :class:`QualitySuiteError` when a
    suite cannot be loaded or run, never for bad data: bad data is what the report is for.
    """
    if kind not in OUTBOX_KINDS:
        raise ValueError(f"unknown outbox kind {kind!r} (known: {', '.join(OUTBOX_KINDS)})")
    names_allowed = sorted({str(name) for name in metric_names})
    if kind in EVENT_KINDS and not names_allowed:
        raise ValueError(f"metric_names is empty: every {kind} row would fail; pass the configured metric names")
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    parameters = {"metric_names": names_allowed, "latest_time": (now + TIME_HORIZON).isoformat()}

    import numpy as np
    import pandas as pd

    batch = flatten_batch(kind, rows)
    keys = [key for key, _ in rows]
    failed = {key: [f"{UNFLATTENABLE}: {reason}"] for key, reason in batch.unflattenable.items()}
    engine = _engine(suites_dir)
    plan = engine.kinds[kind]
    by_name: dict[str, set[str]] = {name: set() for name in plan.names}
    validations: list[Any] = []
    frame = batch.frame
    if len(frame):
        frame_keys = frame["key"].to_numpy(dtype=object)
        with engine.lock:
            result = engine.run(plan.rows, frame, parameters)
        validations.append(result)
        for expectation_result in result.results:
            name, positions = _unexpected(kind, expectation_result)
            by_name[name].update(frame_keys[positions])
        for column, suite in plan.distinct.items():
            codes, distinct = frame[column].factorize()  # nulls get code -1: not checked, as GX skips nulls
            if not len(distinct):
                continue
            with engine.lock:
                result = engine.run(suite, pd.DataFrame({column: distinct}), parameters)
            validations.append(result)
            for expectation_result in result.results:
                name, positions = _unexpected(kind, expectation_result)
                by_name[name].update(frame_keys[np.isin(codes, positions)])

    for name in plan.names:  # suite order, so every row lists its failures the same way
        for key in by_name[name]:
            failed.setdefault(key, []).append(name)
    failures = {key: failed[key] for key in dict.fromkeys(keys) if key in failed}
    by_expectation = {name: len(by_name[name]) for name in plan.names}
    if batch.unflattenable:
        by_expectation[UNFLATTENABLE] = len(batch.unflattenable)
    return QualityReport(
        kind=kind,
        rows=len(rows),
        failures=failures,
        passed_keys=[key for key in keys if key not in failed],
        by_expectation=by_expectation,
        validations=tuple(validations),
    )


# ----------------------------------------------------------------------------- data docs


def build_data_docs(reports: Iterable[QualityReport], folder: Path, *, suites_dir: Path | None = None) -> Path:
    """Write GX Data Docs (HTML) for these reports' validations and the suites into ``folder``.

    Returns the site's ``index.html``. Earlier pages already in ``folder`` stay listed in the index,
    so one folder builds up a history. ``suites_dir`` must be the one the reports were made with.
    """
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    engine = _engine(suites_dir)
    site_name = "kl_sync_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    site = {
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(folder)},
    }
    results = [result for report in reports for result in report.validations]
    with engine.lock:
        context = engine.context
        if site_name not in (context.config.data_docs_sites or {}):
            context.add_data_docs_site(site_name, site)
        store = context.validation_results_store
        identifiers = [
            ValidationResultIdentifier(
                expectation_suite_identifier=ExpectationSuiteIdentifier(name=result.suite_name),
                run_id=result.meta["run_id"],
                batch_identifier=result.meta["batch_markers"]["pandas_data_fingerprint"],
            )
            for result in results
        ]
        suites = [ExpectationSuiteIdentifier(name=suite.name) for suite in engine.context.suites.all()]
        # The site builder reads results from the context's store: put them there for the build only.
        for identifier, result in zip(identifiers, results):
            store.set(identifier, result)
        try:
            context.build_data_docs(site_names=[site_name], resource_identifiers=[*identifiers, *suites])
        finally:
            for identifier in identifiers:
                store.remove_key(identifier)
    return folder / "index.html"
