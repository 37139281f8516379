"""How values are made and kept in the account: ids, times, identifier keys, JSON text."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import string
import time
from typing import Any

import orjson

_STDLIB_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(value: Any) -> str:
    """JSON text as stored: compact, UTF-8 kept, as the standard library writes it but for floats
    below 1e-4, written as orjson writes them (``0.00001`` for ``1e-05``: the same number read back).

    What is stored came from a request body the standard library decoded, so it holds only JSON's
    types: orjson writes those ~4× faster (an event's properties, 1,000 a bulk request, were a tenth
    of the emulator's time). orjson writes Infinity (that decoder's reading of ``1e400``) and NaN as
    ``null``, so text holding ``null`` is written by the standard library again, as is what orjson
    refuses (an integer beyond 64 bits)."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return _STDLIB_DUMPS(value)
    if b"null" in data:
        return _STDLIB_DUMPS(value)
    return data.decode("utf-8")

_SHORT_ALPHABET = string.ascii_letters + string.digits
_CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: Byte -> one Crockford character (its low 5 bits), so random bytes become id text in C.
_RANDOM_CHARS = bytes(ord(_CROCKFORD_ALPHABET[b & 31]) for b in range(256))


def new_ulid() -> str:
    """26 Crockford base-32 characters: 10 for the time in ms, 16 random (a ULID, as Klaviyo's
    profile and job ids are)."""
    ms = int(time.time() * 1000)
    stamp = "".join(_CROCKFORD_ALPHABET[(ms >> shift) & 31] for shift in range(45, -5, -5))
    return stamp + os.urandom(16).translate(_RANDOM_CHARS).decode("ascii")


def new_short_id() -> str:
    """Six letters and digits (Klaviyo's metric and list ids look like this)."""
    return "".join(secrets.choice(_SHORT_ALPHABET) for _ in range(6))


def uuid4_from_hex(hex32: str) -> str:
    """A version-4 UUID string from 32 random hex digits (uuid.uuid4() is slow in bulk)."""
    variant = "89ab"[int(hex32[16], 16) & 3]
    return f"{hex32[:8]}-{hex32[8:12]}-4{hex32[13:16]}-{variant}{hex32[17:20]}-{hex32[20:32]}"


#: Values per ``IN (…)`` of the account's SQLite file: SQLite takes at most 999 parameters a statement.
IN_LIST_SIZE = 500


def placeholders(count: int) -> str:
    """``?,?,?`` for an ``IN (...)`` of ``count`` values."""
    return ",".join("?" * count)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat()


def iso_from_epoch(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat()


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def identifier_key(kind: str, value: str) -> str:
    """E-mail matches case-insensitively; other identifiers as sent."""
    return value.strip().lower() if kind == "email" else value.strip()
