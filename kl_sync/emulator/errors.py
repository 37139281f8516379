"""Klaviyo's error body, built once: ``{"errors": [{id, status, code, title, detail, source}]}``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

#: Titles Klaviyo uses for each error code.
TITLES = {
    "invalid": "Invalid input.",
    "parse_error": "Malformed request.",
    "not_authenticated": "Authentication credentials were not provided.",
    "authentication_failed": "Incorrect authentication credentials.",
    "permission_denied": "You do not have permission to perform this action.",
    "not_found": "Not found.",
    "method_not_allowed": "Method not allowed.",
    "unsupported_media_type": "Unsupported media type.",
    "payload_too_large": "Request payload too large.",
    "duplicate_profile": "Conflict.",
    "throttled": "Request was throttled.",
    "gone": "Gone.",
    "error": "A server error occurred.",
    "service_unavailable": "Service unavailable.",
}


def pointer(path: Sequence[str | int]) -> str:
    """RFC 6901 JSON pointer for a path of keys and indexes."""
    return "".join("/" + str(key).replace("~", "~0").replace("/", "~1") for key in path) or "/"


@dataclass(frozen=True)
class Problem:
    """One error object; ``pointer`` (into the body) or ``parameter`` (query/header) says where."""

    status: int
    code: str
    detail: str
    pointer: str | None = None
    parameter: str | None = None
    meta: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": TITLES.get(self.code, "Error."),
            "detail": self.detail,
        }
        if self.parameter is not None:
            body["source"] = {"parameter": self.parameter}
        else:
            body["source"] = {"pointer": self.pointer or "/data/"}
        if self.meta:
            body["meta"] = self.meta
        return body


@dataclass
class ApiProblemError(Exception):
    """Raised to answer a request with one or more :class:`Problem` (the app turns it into Klaviyo's
    error body); the HTTP status is the first problem's unless ``status`` says otherwise."""

    problems: list[Problem]
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.problems[0].detail if self.problems else "error")

    @property
    def http_status(self) -> int:
        return self.status or self.problems[0].status

    def body(self) -> dict[str, Any]:
        return {"errors": [p.as_json() for p in self.problems]}


def fail(status: int, code: str, detail: str, **where: Any) -> ApiProblemError:
    return ApiProblemError([Problem(status, code, detail, **where)])


def invalid(problems: Iterable[Problem]) -> ApiProblemError:
    """All of a request's problems in one answer; 400 unless every problem says the same other status."""
    found = list(problems)
    statuses = {p.status for p in found}
    return ApiProblemError(found, status=statuses.pop() if len(statuses) == 1 else 400)
