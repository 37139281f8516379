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
# (encode_payload's fast path writes the same but for some floats' exponents: see there.)
_CHECKED_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


#: A datetime, a dataclass or a subclass of a JSON type raises in orjson and goes to the standard
#: library, which encodes or refuses it as always (an IntEnum or str Enum member orjson writes as its
#: value, as the standard library does; the round trip in encode_payload is what keeps that exact).
_SORTED_ORJSON = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME
                  | orjson.OPT_PASSTHROUGH_DATACLASS)


def encode_payload(payload: Any) -> str:
    """Stable JSON text for a payload a step queues, or :class:`PayloadProblem` naming why it cannot
    be queued (see :func:`~kl_sync.payloads.payload_problem`).

    orjson writes it with sorted keys (~4x faster than the standard library: encoding every payload
    was a sixth of the store-reading process's time, benchmarks/README.md), and the text is decoded
    again and compared with the payload. Equal, it is the same JSON the standard library writes, byte
    for byte but for floats below 1e-4 (``0.00001`` for ``1e-05``, ``1e-7`` for ``1e-07``: the same
    number; the one difference over 200,000 random doubles with orjson 3.13). Not
    equal (NaN or Infinity, which orjson writes as ``null``; a UUID or an Enum member, which orjson
    writes and the standard library refuses; a tuple), or refused by orjson (an integer beyond 64
    bits, a lone surrogate, a key that is not text, nesting past 255), the payload goes to
    :func:`_encode_checked`, which encodes or refuses it as before."""
    try:
        data = orjson.dumps(payload, option=_SORTED_ORJSON)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _encode_checked(payload)
    if orjson.loads(data) != payload:
        return _encode_checked(payload)
    return _checked_text(payload, data.decode("utf-8"), len(data))


def _encode_checked(payload: Any) -> str:
    """:func:`encode_payload` by the standard library. Two C encoders do the checking: ``json``
    refuses NaN, Infinity and what is not JSON; orjson refuses integers beyond 64 bits, text that is
    not UTF-8 and nesting past 255, and measures the bytes."""
    try:
        text = _CHECKED_JSON.encode(payload)
        size = len(orjson.dumps(payload))
    except (ValueError, TypeError, RecursionError) as exc:  # orjson.JSONEncodeError is a TypeError
        raise PayloadProblem(payload_problem(payload) or f"is not JSON ({exc})") from None
    return _checked_text(payload, text, size)


def _checked_text(payload: Any, text: str, size: int) -> str:
    """``text`` of ``payload`` (``size`` bytes as UTF-8) if Klaviyo can take it. A payload whose text
    shows a NUL or much nesting is walked to find (or clear) the problem: an ordinary payload costs
    the encoding the outbox needs anyway and a few microseconds."""
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
