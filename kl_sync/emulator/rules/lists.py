"""Lists: ``POST /api/lists`` and ``POST /api/lists/{id}/relationships/profiles``."""

from __future__ import annotations

from typing import Any

from kl_sync.constants import MAX_LIST_MEMBERS_PER_REQUEST
from kl_sync.emulator.errors import Problem, pointer
from kl_sync.emulator.rules.common import get, items_at

MAX_LIST_MEMBERS = MAX_LIST_MEMBERS_PER_REQUEST


def read_list_create(body: Any) -> tuple[str, str | None, list[Problem]]:
    """``POST /api/lists``: the name (which must not be blank) and the opt-in process."""
    name = get(body, "data", "attributes", "name")
    opt_in = get(body, "data", "attributes", "opt_in_process")
    problems = []
    if isinstance(name, str) and not name.strip():
        problems.append(Problem(400, "invalid", "A list needs a name.", pointer(("data", "attributes", "name"))))
    return (name if isinstance(name, str) else ""), (opt_in if isinstance(opt_in, str) else None), problems


def read_list_members(body: Any) -> tuple[list[tuple[str, str]], list[Problem]]:
    """``POST /api/lists/{id}/relationships/profiles``: (profile id, pointer) pairs."""
    items, problems = items_at(
        body, ("data",), MAX_LIST_MEMBERS, "{count:,} profiles in one call; at most {limit:,} are accepted."
    )
    members = [
        (item["id"], pointer(("data", index, "id")))
        for index, item in enumerate(items)
        if isinstance(item, dict) and isinstance(item.get("id"), str)
    ]
    return members, problems
