"""What every rule shares: reading a body that may have failed the shape check, the e-mail rule,
the per-request item limit, and :class:`Read`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kl_sync.constants import EMAIL_PATTERN
from kl_sync.emulator.errors import Problem, invalid, pointer
from kl_sync.emulator.storage.profiles import ProfileWrite
from kl_sync.emulator.storage.writes import EventWrite

# The one e-mail rule, which kl-sync's own check (kl_sync/normalize.py) and its suites use too.
_EMAIL = re.compile(EMAIL_PATTERN)


@dataclass(frozen=True)
class Read:
    """What a write request asks for, once its rules have been applied."""

    events: list[EventWrite]
    profiles: list[ProfileWrite]
    problems: list[Problem]


def get(value: Any, *keys: str | int) -> Any:
    """``value[k1][k2]...``, or None where the body has no such object member."""
    try:
        for key in keys:
            value = value[key]
    except (KeyError, TypeError, IndexError):
        return None
    return value


def as_list(value: Any) -> list:
    return value if isinstance(value, list) else []


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def valid_email(text: str) -> bool:
    return _EMAIL.match(text) is not None


def items_at(body: Any, path: tuple, limit: int, detail: str) -> tuple[list, list[Problem]]:
    """The list at ``path`` in the body (empty when there is none), and the problem of it holding
    more than ``limit`` items (see :func:`too_many`)."""
    found = as_list(get(body, *path))
    return found, too_many(len(found), limit, detail, path)


def too_many(count: int, limit: int, detail: str, path: tuple) -> list[Problem]:
    """The problem of a request carrying more than ``limit`` items (none when it does not);
    ``detail`` is formatted with ``count`` and ``limit``."""
    if count <= limit:
        return []
    return [Problem(400, "invalid", detail.format(count=count, limit=limit), pointer(path))]


def raise_problems(problems: list[Problem]) -> None:
    """Reject the request with every problem found (one per pointer and message)."""
    if problems:
        raise invalid(list(dict.fromkeys(problems)))
