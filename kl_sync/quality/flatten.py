"""Payloads as the suites see them: a batch of one kind becomes a DataFrame, one row per outbox row,
one column per thing a suite checks (the kind's flattener, :attr:`kl_sync.kinds.Kind.columns`), plus
what every kind shares (``key``, ``max_string_bytes``)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kl_sync.kinds import kind_of
from kl_sync.payloads import UnflattenablePayload

if TYPE_CHECKING:
    import pandas as pd

#: Values walked per payload before making sure it has no cycle (a walk over a cycle never ends).
#: Far above any real payload, so the check (a full ``json.dumps``) almost never runs.
_VALUES_BEFORE_CYCLE_CHECK = 100_000
_NO_CYCLE = 1 << 62


@dataclass(frozen=True)
class FlatBatch:
    """A batch as the suites see it: ``frame`` has a ``key`` column and one row per flattenable row."""

    kind: str
    frame: pd.DataFrame
    #: Row key -> why its payload could not be flattened.
    unflattenable: dict[str, str]
    #: Every row's key, in the order read (flattenable or not): the rows are read once.
    keys: list[str] = field(default_factory=list)


def scan_payload(payload: Any) -> int:
    """UTF-8 size of the longest string (key or value) anywhere in ``payload``.

    Raises :class:`UnflattenablePayload` if the payload holds a value JSON cannot carry (a Decimal,
    a datetime, NaN or Infinity) or refers to itself: the sender would fail on it, or send invalid
    JSON that Klaviyo rejects together with the rest of its batch. A value shared by two places is
    fine (it is walked twice). Keys are not type-checked: payloads decoded from JSON only have str keys.
    """
    # A flat loop with exact type tests: this runs for every value of every row (~80 in an order
    # event), so it is the flattener's hot spot. A dict's str keys and its scalar values (most of a
    # payload) are measured where the dict is met, not pushed and popped one by one; the rest (what
    # nests or could raise) is pushed keys below values, as pushing everything would, so the walk
    # meets it, and refuses a payload, in the same order. Subclasses (IntEnum, OrderedDict) take the
    # slow branches.
    longest = 0
    stack = [payload]
    pop, append, extend = stack.pop, stack.append, stack.extend
    budget = _VALUES_BEFORE_CYCLE_CHECK
    while stack:
        item = pop()
        kind = type(item)
        if kind is dict:
            pushed = len(stack)
            other_keys = None
            for key, value in item.items():
                if type(key) is str:
                    size = len(key)
                    # n characters are n..4n bytes: skip the encode when the string cannot be the longest.
                    if size * 4 > longest:
                        if not key.isascii():
                            size = len(key.encode("utf-8", "surrogatepass"))
                        if size > longest:
                            longest = size
                elif other_keys is None:
                    other_keys = [key]
                else:
                    other_keys.append(key)
                value_kind = type(value)
                if value_kind is str:
                    size = len(value)
                    if size * 4 > longest:
                        if not value.isascii():
                            size = len(value.encode("utf-8", "surrogatepass"))
                        if size > longest:
                            longest = size
                elif not (value_kind is int or value_kind is bool or value is None):
                    append(value)
            if other_keys is not None:  # below the values
                stack[pushed:pushed] = other_keys
            # The values measured here count as walked, as if each had been popped.
            budget -= 2 * len(item) - (len(stack) - pushed)
        elif kind is str:
            size = len(item)
            if size * 4 > longest:
                if not item.isascii():
                    size = len(item.encode("utf-8", "surrogatepass"))
                if size > longest:
                    longest = size
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
        if budget <= 0:
            _refuse_cycles(payload)
            budget = _NO_CYCLE  # none: the walk ends
    return longest


def _refuse_cycles(payload: Any) -> None:
    try:
        json.dumps(payload)
    except ValueError as exc:  # json raises ValueError("Circular reference detected") for a cycle
        raise UnflattenablePayload(f"payload refers to itself ({exc})") from None
    except TypeError as exc:  # a non-JSON value the walk has not reached yet
        raise UnflattenablePayload(f"payload is not JSON ({exc})") from None


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

    columns_of = kind_of(kind).columns
    # Column by column, not a dict per row: a batch of 20,000 rows' dicts took ~24 MB beside the frame
    # built from them, while the batch before it was being sent (benchmark 4).
    columns: dict[str, list[Any]] = {}
    flattened = 0
    unflattenable: dict[str, str] = {}
    keys: list[str] = []
    for key, payload in rows:
        keys.append(key)
        try:
            if not isinstance(payload, Mapping):
                raise UnflattenablePayload(f"payload is a {type(payload).__name__}, not an object")
            longest = scan_payload(payload)
            record = columns_of(payload)
        except UnflattenablePayload as exc:
            unflattenable[key] = str(exc)
            continue
        except (RecursionError, ValueError, TypeError, OverflowError) as exc:  # a poison value: this row only
            unflattenable[key] = f"{type(exc).__name__}: {str(exc)[:300]}"
            continue
        record["key"] = key
        record["max_string_bytes"] = longest
        for name in record:
            if name not in columns:  # a column first met here: null in the rows before
                columns[name] = [None] * flattened
        for name, column in columns.items():
            column.append(record.get(name))
        flattened += 1
    frame = pd.DataFrame(columns) if flattened else pd.DataFrame({"key": pd.Series([], dtype=str)})
    if "time_text" in frame:
        # Offsets differ row to row (DST); utc=True turns them all into one instant column.
        frame["time_parsed"] = pd.to_datetime(frame.pop("time_text"), utc=True, format="ISO8601", errors="coerce")
    if "value" in frame:
        frame["value"] = frame["value"].astype("float64")
    return FlatBatch(kind=kind, frame=frame, unflattenable=unflattenable, keys=keys)
