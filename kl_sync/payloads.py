"""The shapes kl-sync queues in its outbox, one per Klaviyo operation, and how to read a stored one.

Every pipeline step writes these as the JSON ``payload`` of an outbox row; the sender turns them
into Klaviyo JSON:API bodies (``kl_sync.klaviyo.events`` / ``profiles`` / ``suppressions``) and the
quality suites validate them. They are deliberately close to Klaviyo's own attribute names so a
payload reads the same in the state DB, a dead letter and the request body. Which kind carries which
shape is declared in :mod:`kl_sync.kinds`.

A payload read back from the outbox may not have its shape (a bug, a hand edit, a store value that
is not what it claims): :func:`object_field` and :func:`json_type` read one defensively, for the
flatteners the suites check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from kl_sync.constants import MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_JSON_INT

#: Klaviyo's e-commerce metrics, recognised by its analytics (CLV, benchmarks) only when spelled so.
PLACED_ORDER, ORDERED_PRODUCT = "Placed Order", "Ordered Product"
CANCELLED_ORDER, FULFILLED_ORDER = "Cancelled Order", "Fulfilled Order"


class ProfilePayload(TypedDict):
    """A profile as Klaviyo identifies it: by e-mail and the store's customer id (``external_id``),
    with the store's current custom properties."""

    email: str
    #: The store's customer id, as text: one Klaviyo profile per customer whatever its e-mail.
    external_id: NotRequired[str]
    first_name: NotRequired[str | None]
    last_name: NotRequired[str | None]
    #: Custom properties: Schedule, Status, Box, SignUpDate, HasFilledOutProfile.
    properties: NotRequired[dict[str, Any]]


class EventPayload(TypedDict):
    """One Klaviyo event for one profile (kinds ``log_event``, ``order_event``, ``ordered_product``)."""

    metric: str
    #: ISO 8601 with the store's UTC offset, e.g. ``2024-05-15T12:35:32-04:00``.
    time: str
    #: The outbox key; Klaviyo dedupes on (profile, metric, unique_id).
    unique_id: str
    properties: dict[str, Any]
    profile: ProfilePayload
    value: NotRequired[float]
    value_currency: NotRequired[str]
    #: True for history: Klaviyo records the event without firing flows.
    backfill: NotRequired[bool]


class SuppressionPayload(TypedDict):
    """An e-mail to suppress or unsuppress (kinds ``suppression``, ``unsuppression``)."""

    email: str
    #: The store's customer it belongs to, when the customers step queued it.
    customer_id: NotRequired[int]


class UnflattenablePayload(ValueError):
    """The payload's shape is too broken to check field by field; the message says why."""


def object_field(container: Mapping[str, Any], name: str, where: str = "") -> Mapping[str, Any]:
    """``container[name]`` as a mapping; absent or null counts as empty, anything else is unflattenable."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise UnflattenablePayload(f"{where}{name} is a {type(value).__name__}, not an object")
    return value


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


def text_problem(text: str) -> str | None:
    """Why a store text cannot travel to Klaviyo (None when it can): bytes that are not UTF-8 (read as
    lone surrogates, see :func:`kl_sync.db.make_engine`), or a NUL character (binary data, or a broken
    import, in a text column)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"is not valid UTF-8 text ({printable(text)[:80]!r}, at character {exc.start})"
    if "\x00" in text:
        return f"holds a NUL character ({printable(text)[:80]!r})"
    return None


def printable(text: str) -> str:
    """``text`` with what UTF-8 cannot carry shown as escapes (a byte that was not UTF-8 as ``\\xff``),
    so a dead letter can quote a poison value and still be stored."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that was never a byte (a "\\ud800" escape in JSON)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")


def printable_value(value: Any) -> Any:
    """A copy of a store row's value (a dict of columns, a list, a string) with every string
    :func:`printable`: what a dead letter keeps as the original."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, Mapping):
        return {printable(str(k)): printable_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [printable_value(v) for v in value]
    return value


_INF = float("inf")


def _path(parts: tuple[str | int, ...]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts).lstrip(".") or "payload"


def payload_problem(payload: Any, *, max_bytes: int = MAX_BODY_BYTES) -> str | None:
    """Why a payload cannot be queued (None when it can), naming where in it: nested deeper than
    :data:`~kl_sync.constants.MAX_JSON_DEPTH`, a number JSON cannot carry (NaN, Infinity) or beyond 64
    bits, text that is not UTF-8 or holds a NUL, a value that is not JSON, or surely more than
    ``max_bytes`` once encoded. Iterative, so no nesting makes it raise; ~15 µs for an event, so the
    steps ask :func:`kl_sync.state.codec.encode_payload`, which calls this only for a payload it doubts."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(payload, ())]
    size = 0
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            size += len(value) + 2
            problem = text_problem(value)
            if problem is not None:
                return f"{_path(path)} {problem}"
        elif isinstance(value, (Mapping, list, tuple)):
            if len(path) >= MAX_JSON_DEPTH:
                return f"{_path(path[:3])}… nests deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(value, Mapping):
                for key, item in value.items():
                    if not isinstance(key, str):
                        return f"{_path(path)} has a key that is not text ({key!r})"
                    problem = text_problem(key)
                    if problem is not None:
                        return f"{_path(path)} has a key that {problem}"
                    size += len(key) + 3
                    stack.append((item, (*path, key)))
            else:
                size += 2
                stack.extend((item, (*path, index)) for index, item in enumerate(value))
        elif value is None or isinstance(value, bool):
            size += 2
        elif isinstance(value, int):
            if abs(value) > MAX_JSON_INT:
                return f"{_path(path)} is {str(value)[:30]}…, an integer beyond 64 bits"
            size += 2
        elif isinstance(value, float):
            if value != value or value in (_INF, -_INF):
                return f"{_path(path)} is {value!r}, which JSON cannot carry"
            size += 2
        else:
            return f"{_path(path)} is a {type(value).__name__}, which is not JSON"
        if size > max_bytes:
            return f"is more than {max_bytes:,} bytes as JSON (Klaviyo's limit)"
    return None
