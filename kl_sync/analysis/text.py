"""The words of the sentences under the notebooks' figures: counts with their noun, shares."""

from __future__ import annotations


def pct(part: float, whole: float) -> str:
    """``part`` as a whole percentage of ``whole`` ("n/a" of nothing)."""
    return f"{part / whole:.0%}" if whole else "n/a"


def count(n: int, singular: str, plural: str | None = None) -> str:
    """``n`` with its noun: "1 event", "2 events", "0 people" (``plural`` when not ``singular`` + s)."""
    return f"{n} {singular if n == 1 else plural or singular + 's'}"


def verb(n: int, singular: str, plural: str) -> str:
    """The verb agreeing with ``n``: ``verb(1, "has", "have")`` is "has"."""
    return singular if n == 1 else plural
