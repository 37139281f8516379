"""The outbox's payload text (:func:`kl_sync.state.codec.encode_payload`): orjson's fast path writes
what the standard library writes, and refuses what it refused."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from decimal import Decimal
from typing import Any

import orjson
import pytest

from kl_sync.state.codec import PayloadProblem, encode_payload, loads

# What the standard library path writes (kl_sync.state.codec._CHECKED_JSON), written out again here.
STDLIB = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)

#: Every code point but NUL (refused, below) and the surrogates (not text), as one string.
EVERY_CHARACTER = "".join(chr(c) for c in range(1, 0x110000) if not 0xD800 <= c < 0xE000)


class Colour(enum.Enum):
    RED = 1


class Level(enum.IntEnum):
    HIGH = 3


def _takes_the_fast_path(payload: Any) -> bool:
    """Whether orjson's text of ``payload`` decodes back equal to it (what encode_payload keeps)."""
    try:
        return orjson.loads(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)) == payload
    except TypeError:  # orjson refuses it
        return False


def test_orjsons_text_is_the_standard_librarys_byte_for_byte() -> None:
    """Keys sorted by code point (non-ASCII and astral ones too), every character escaped as the
    standard library escapes it (control characters, quotes, backslashes; the rest as is), every
    number but floats below 1e-4 (below)."""
    payload = {
        "text": EVERY_CHARACTER, EVERY_CHARACTER[:300]: 1, "é": 2, "z": 3, "Z": 4, "\U0001f600": 5, "\uffff": 6,
        "ä": {"b": [], "a": {}},
        "numbers": [0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1.5, -0.0, 0.1, 1e-4, 123456789.125, 1e15, 1e16,
                    1.5e300, 5e-324, 12345678901234567.0, True, False, None],
        "nested": [[{"x": "\n\t\"\\\u2028\x7f"}]], "level": Level.HIGH,
    }
    assert _takes_the_fast_path(payload)
    assert encode_payload(payload) == STDLIB.encode(payload)


def test_keys_are_sorted_whatever_order_they_were_built_in() -> None:
    payload = {"b": 1, "a": {"d": 2, "c": 3}, "\U0001f600": 4, "é": 5}
    assert _takes_the_fast_path(payload)
    assert encode_payload(payload) == '{"a":{"c":3,"d":2},"b":1,"é":5,"\U0001f600":4}'


def test_what_orjson_would_write_differently_goes_to_the_standard_library() -> None:
    """A tuple (a list once decoded) sends the payload to the standard library's path: the same text."""
    payload = {"tuple": (1, "a"), "f": 1e-05}
    assert not _takes_the_fast_path(payload)
    assert encode_payload(payload) == STDLIB.encode(payload) == '{"f":1e-05,"tuple":[1,"a"]}'


@pytest.mark.parametrize("value,text", [(1e-5, "0.00001"), (1e-7, "1e-7"), (2.5e-5, "0.000025")])
def test_floats_below_1e_4_are_written_as_orjson_writes_them(value: float, text: str) -> None:
    """The one difference from the standard library (``1e-05``): the same number, as the decoded
    payload shows."""
    encoded = encode_payload({"v": value})
    assert encoded == f'{{"v":{text}}}' != STDLIB.encode({"v": value})
    assert loads(encoded) == {"v": value}


@pytest.mark.parametrize("value,problem", [
    (float("nan"), "v is nan, which JSON cannot carry"),
    (float("inf"), "v is inf, which JSON cannot carry"),
    ([None, float("-inf")], "v[1] is -inf, which JSON cannot carry"),  # orjson writes it as null
    ({"a": None, "b": float("nan")}, "v.b is nan, which JSON cannot carry"),
    (uuid.UUID(int=1), "v is a UUID, which is not JSON"),  # orjson writes these two; json refuses them
    (Colour.RED, "v is a Colour, which is not JSON"),
    (dt.datetime(2026, 1, 1), "v is a datetime, which is not JSON"),
    (Decimal("1.5"), "v is a Decimal, which is not JSON"),
    (2**64, "v is 18446744073709551616…, an integer beyond 64 bits"),
    ("\ud800", "v is not valid UTF-8 text ('\\\\xed\\\\xa0\\\\x80', at character 0)"),
    ({1: "a"}, "v has a key that is not text (1)"),
    ("a\x00b", "v holds a NUL character ('a\\x00b')"),
])
def test_what_the_standard_library_refused_is_refused_naming_it(value: Any, problem: str) -> None:
    with pytest.raises(PayloadProblem) as refused:
        encode_payload({"v": value})
    assert str(refused.value) == problem


@pytest.mark.parametrize("levels", [100, 300])  # orjson writes 100 levels; it refuses past 255
def test_nesting_and_size_past_klaviyos_limits_are_refused(levels: int) -> None:
    deep: Any = "x"
    for _ in range(levels):
        deep = [deep]
    assert _takes_the_fast_path({"v": deep}) == (levels < 255)
    with pytest.raises(PayloadProblem, match="nests deeper than 64 levels"):
        encode_payload({"v": deep})
    with pytest.raises(PayloadProblem, match="bytes as JSON; Klaviyo takes at most"):
        encode_payload({"v": "x" * 6_000_000})
