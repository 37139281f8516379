"""Klaviyo errors, classified once: every failed call becomes exactly one of these.

- :class:`RetryableError`: 408, 429, 5xx, timeouts, connection errors and resets. Worth trying again later;
  the client retries these itself before raising.
- :class:`AuthError`: 401/403. The key is wrong or lacks a scope; retrying cannot help and every other
  call will fail the same way, so it stops a run.
- :class:`RejectedError`: any other 4xx. Klaviyo refused this request's content; it carries the parsed
  JSON:API ``errors`` (``source.pointer`` names the offending item of a bulk body).

Messages are built from the status, the endpoint and Klaviyo's own error text, never from request
headers, so the API key cannot end up in one.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Mapping
from typing import Any


class KlaviyoError(Exception):
    """A Klaviyo call failed. ``status`` is None when no HTTP response came back."""

    def __init__(
        self,
        message: str,
        *,
        endpoint: str = "",
        status: int | None = None,
        errors: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.endpoint = endpoint
        self.status = status
        self.errors: list[dict[str, Any]] = list(errors or [])
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields would be lost by the default pickling (args only); Prefect and
        # multiprocessing pickle exceptions, so keep them.
        return (_rebuild, (type(self), self.message, self.endpoint, self.status, self.errors, self.retry_after))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r}, endpoint={self.endpoint!r})"


def _rebuild(
    cls: type[KlaviyoError],
    message: str,
    endpoint: str,
    status: int | None,
    errors: list[dict[str, Any]],
    retry_after: float | None,
) -> KlaviyoError:
    return cls(message, endpoint=endpoint, status=status, errors=errors, retry_after=retry_after)


class RetryableError(KlaviyoError):
    """Transient: 408, 429, 5xx, timeout or a dropped connection. ``retry_after`` is Klaviyo's hint in seconds."""


class RejectedError(KlaviyoError):
    """Klaviyo refused the request's content (a 4xx other than 401/403/429)."""


class AuthError(KlaviyoError):
    """401 or 403: the API key is invalid, revoked, or lacks the scope for this endpoint."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (integer or decimal) or an HTTP date."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def parse_error_body(content: bytes | str | None) -> list[dict[str, Any]]:
    """The JSON:API ``errors`` list of a response body; ``[]`` when the body is not JSON:API."""
    if not content:
        return []
    try:
        document = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    return [error for error in errors if isinstance(error, dict)]


def describe_errors(errors: list[dict[str, Any]], *, limit: int = 3) -> str:
    """A short human line from JSON:API errors: ``code: detail (at pointer)``, the first few."""
    parts = [describe_error(error) for error in errors[:limit]]
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def describe_error(error: Mapping[str, Any]) -> str:
    code = error.get("code") or error.get("title") or "error"
    detail = error.get("detail") or error.get("title") or ""
    text = f"{code}: {detail}" if detail and detail != code else str(code)
    pointer = error_pointer(error)
    if pointer:
        text += f" (at {pointer})"
    return text


def error_pointer(error: Mapping[str, Any]) -> str | None:
    source = error.get("source")
    if isinstance(source, Mapping):
        pointer = source.get("pointer")
        if isinstance(pointer, str) and pointer:
            return pointer
    return None


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    content: bytes | str | None,
    *,
    endpoint: str,
) -> KlaviyoError | None:
    """Classify one HTTP response: None for success (1xx-3xx), else the one error class it belongs to."""
    if status < 400:
        return None
    errors = parse_error_body(content)
    summary = describe_errors(errors) or _reason_phrase(status)
    message = f"Klaviyo {endpoint}: HTTP {status}: {summary}"
    fields: dict[str, Any] = {"endpoint": endpoint, "status": status, "errors": errors}
    if status in (408, 429) or status >= 500:
        return RetryableError(message, retry_after=parse_retry_after(headers.get("Retry-After")), **fields)
    if status in (401, 403):
        return AuthError(message, **fields)
    return RejectedError(message, **fields)


def _reason_phrase(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
