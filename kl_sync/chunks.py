"""One way to cut a sequence into pieces: for ``IN (…)`` lists, statements and request bodies."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

#: Values per ``IN (…)`` list: far under every backend's bound-parameter limit, and one round trip
#: per thousand keys.
IN_LIST_SIZE = 1000


def chunks(sequence: Sequence[T], size: int) -> Iterator[list[T]]:
    """Consecutive slices of ``sequence`` of at most ``size`` items (the last may be shorter), as lists."""
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    for start in range(0, len(sequence), size):
        yield list(sequence[start : start + size])
