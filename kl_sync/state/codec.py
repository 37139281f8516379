"""How values are kept in the state database: payloads and originals as stable JSON text, timestamps
as naive UTC. Every state module reads and writes through these."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson


def utcnow() -> dt.datetime:
    """Naive UTC: what every state timestamp is stored as, on every backend."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


# One encoder for every call: ``json.dumps`` with options builds a new JSONEncoder each time, which
# was a tenth of the parse step's time (benchmarks/README.md).
_STABLE_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def dumps(value: Any) -> str:
    """Stable JSON for payloads and originals: the same input always gives the same text."""
    return _STABLE_JSON.encode(value)


def loads(text: str) -> Any:
    """Decode a stored payload. orjson decodes ~3× faster than the standard library (a claim decodes
    every payload of its batch); what orjson refuses and ``json`` takes (NaN, integers beyond 64 bits)
    goes to ``json``. Both give equal values."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
