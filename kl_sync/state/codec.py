"""How values are kept in the state database: payloads and originals as stable JSON text, timestamps
as naive UTC. Every state module reads and writes through these."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson

from kl_sync.constants import MAX_BODY_BYTES, MAX_JSON_DEPTH
from kl_sync.payloads import payload_problem


def utcnow() -> dt.datetime:
    """Naive UTC: what every state timestamp is stored as, on every backend."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# One encoder for every call: ``json.dumps`` with options builds a new JSONEncoder each time, which
# was a tenth of the parse step's time (benchmarks/README.md).
_STABLE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    """Stable JSON for payloads and originals: the same input always gives the same text."""
    return _STABLE_JSON.encode(value)


class PayloadProblem(ValueError):
    """A payload that cannot be queued; the message says what is wrong and where (:func:`payload_problem`)."""


# The same text as ``dumps`` for every payload it takes; it refuses NaN and what is not JSON.
_CHECKED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def encode_payload(payload: Any) -> str:
    """``dumps(payload)`` for a payload a step queues, or :class:`PayloadProblem` naming why it cannot
    be queued (see :func:`~kl_sync.payloads.payload_problem`).

    Two C encoders do the checking: ``json`` refuses NaN, Infinity and what is not JSON; orjson
    refuses integers beyond 64 bits, text that is not UTF-8 and nesting past 255, and measures the
    bytes. A payload either refuses, or whose text shows a NUL or much nesting, is then walked to
    find (or clear) the problem: an ordinary payload costs the encoding the outbox needs anyway and
    a few microseconds."""
    try:
        text = _CHECKED_JSON.encode(payload)
        size = len(orjson.dumps(payload))
    except (ValueError, TypeError, RecursionError) as exc:  # orjson.JSONEncodeError is a TypeError
        raise PayloadProblem(payload_problem(payload) or f"is not JSON ({exc})") from None
    if size > MAX_BODY_BYTES:
        raise PayloadProblem(f"is {size:,} bytes as JSON; Klaviyo takes at most {MAX_BODY_BYTES:,}")
    if "\\u0000" in text or text.count("{") + text.count("[") >= MAX_JSON_DEPTH:
        problem = payload_problem(payload)
        if problem is not None:
            raise PayloadProblem(problem)
    return text


def loads(text: str) -> Any:
    """Decode a stored payload. orjson decodes ~3× faster than the standard library (a claim decodes
    every payload of its batch); what orjson refuses and ``json`` takes (NaN, Infinity) goes to
    ``json``. The two give equal values for every integer of at most 64 bits; orjson decodes a larger
    one as a float, without an error. None is stored: the steps (and replay, which rebuilds through
    them) queue payloads through :func:`encode_payload`, which refuses integers beyond 64 bits
    (tests/reliability: test_poison, test_replay)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
