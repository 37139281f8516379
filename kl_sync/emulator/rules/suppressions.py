"""Suppressions: ``POST /api/profile-suppression-bulk-create-jobs`` (e-mails, or every member of a
list)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kl_sync.constants import MAX_EMAILS_PER_SUPPRESSION
from kl_sync.emulator.errors import Problem, pointer
from kl_sync.emulator.rules.common import get, items_at, valid_email

MAX_SUPPRESSIONS = MAX_EMAILS_PER_SUPPRESSION


@dataclass(frozen=True)
class SuppressionRequest:
    emails: list[tuple[str, tuple]]  # (email, its path in the request)
    list_id: str | None
    segment_id: str | None
    problems: list[Problem]


def read_suppression(body: Any) -> SuppressionRequest:
    """``POST /api/profile-suppression-bulk-create-jobs`` and ``-bulk-delete-jobs`` (the same body
    shape, ProfileSuppressionCreateQuery / ProfileSuppressionDeleteQuery): emails, or every member
    of a list."""
    base = ("data", "attributes", "profiles", "data")
    resources, problems = items_at(
        body, base, MAX_SUPPRESSIONS, "{count:,} profiles in one request; at most {limit} emails are accepted."
    )
    emails = []
    for index, resource in enumerate(resources):
        email = get(resource, "attributes", "email")
        where = (*base, index, "attributes", "email")
        if isinstance(email, str):
            if valid_email(email.strip()):
                emails.append((email.strip(), where))
            else:
                problems.append(Problem(400, "invalid", f"Invalid email address: {email!r}", pointer(where)))
    list_id = get(body, "data", "relationships", "list", "data", "id")
    segment_id = get(body, "data", "relationships", "segment", "data", "id")
    if not resources and not isinstance(list_id, str) and not isinstance(segment_id, str):
        problems.append(
            Problem(400, "invalid", "Give profiles to suppress, or a list or segment relationship.", pointer(base))
        )
    return SuppressionRequest(
        emails,
        list_id if isinstance(list_id, str) else None,
        segment_id if isinstance(segment_id, str) else None,
        problems,
    )
