"""Klaviyo's ``filter`` query parameter: ``equals(metric_id,"X")``, ``any(email,["a","b"])``,
``greater-or-equal(datetime,2024-01-01T00:00:00Z)``, joined with ``and(...)`` or top-level commas.

Which fields and operators an endpoint allows comes from its spec slice; which of those the emulator
implements is :data:`FIELD_KINDS`. Anything else is a 400 naming the parameter, never a silently
ignored term.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from kl_sync.emulator.errors import fail
from kl_sync.emulator.spec import Operation
from kl_sync.emulator.storage.reads import Condition
from kl_sync.emulator.storage.values import iso

#: Per operation, the filter fields the emulator implements and how their values are read:
#: "text" (a string), "epoch" (a date-time or epoch seconds -> int), "iso" (a date-time -> UTC ISO).
FIELD_KINDS: dict[str, dict[str, str]] = {
    "get_events": {"metric_id": "text", "profile_id": "text", "datetime": "epoch", "timestamp": "epoch"},
    "get_profiles": {
        "id": "text",
        "email": "text",
        "phone_number": "text",
        "external_id": "text",
        "_kx": "text",
        "created": "iso",
        "updated": "iso",
        "subscriptions.email.marketing.suppression.timestamp": "iso",
        "subscriptions.email.marketing.suppression.reason": "text",
    },
    "get_lists": {"id": "text", "name": "text", "created": "iso", "updated": "iso"},
    "get_metrics": {"integration.name": "text", "integration.category": "text"},
}


class FilterSyntaxError(ValueError):
    pass


class _Bare(str):
    """An unquoted token (a date-time, usually), kept apart from quoted strings."""


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, message: str) -> FilterSyntaxError:
        return FilterSyntaxError(f"{message} at position {self.pos} of {self.text!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_spaces(self) -> None:
        while self.peek() == " ":
            self.pos += 1

    def expect(self, char: str) -> None:
        self.skip_spaces()
        if self.peek() != char:
            raise self.error(f"expected {char!r}")
        self.pos += 1

    def name(self) -> str:
        self.skip_spaces()
        start = self.pos
        while self.peek() and (self.peek().isalnum() or self.peek() in "-_.$"):
            self.pos += 1
        if start == self.pos:
            raise self.error("expected a name")
        return self.text[start : self.pos]

    def terms(self) -> list[tuple[str, str, Any]]:
        """expr ("," expr)* up to the end (top level) -> flat (op, field, value) terms."""
        found = self.expression()
        while True:
            self.skip_spaces()
            if self.peek() != ",":
                break
            self.pos += 1
            found += self.expression()
        return found

    def expression(self) -> list[tuple[str, str, Any]]:
        op = self.name()
        self.expect("(")
        if op == "and":
            found = self.expression()
            self.skip_spaces()
            while self.peek() == ",":
                self.pos += 1
                found += self.expression()
                self.skip_spaces()
            self.expect(")")
            return found
        if op in ("or", "not"):
            raise self.error(f"'{op}' is not supported here")
        field = self.name()
        self.skip_spaces()
        value: Any = None
        if self.peek() == ",":
            self.pos += 1
            value = self.value()
        self.expect(")")
        return [(op, field, value)]

    def value(self) -> Any:
        self.skip_spaces()
        char = self.peek()
        if char in ("'", '"'):
            return self.quoted(char)
        if char == "[":
            self.pos += 1
            items = []
            self.skip_spaces()
            if self.peek() == "]":
                self.pos += 1
                return items
            while True:
                items.append(self.value())
                self.skip_spaces()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                self.expect("]")
                return items
        start = self.pos
        while self.peek() and self.peek() not in ",)]":
            self.pos += 1
        token = self.text[start : self.pos].strip()
        if not token:
            raise self.error("expected a value")
        if token in ("true", "false"):
            return token == "true"
        if token == "null":
            return None
        try:
            return int(token)
        except ValueError:
            pass
        try:
            return float(token)
        except ValueError:
            return _Bare(token)

    def quoted(self, quote: str) -> str:
        self.pos += 1
        out = []
        while True:
            char = self.peek()
            if not char:
                raise self.error("unterminated string")
            self.pos += 1
            if char == "\\":
                out.append(self.peek())
                self.pos += 1
            elif char == quote:
                return "".join(out)
            else:
                out.append(char)


def parse_filter(text: str) -> list[tuple[str, str, Any]]:
    """(operator, field, value) terms that must all hold."""
    parser = _Parser(text)
    found = parser.terms()
    parser.skip_spaces()
    if parser.pos != len(text):
        raise parser.error("unexpected text")
    return found


def _moment(value: Any) -> dt.datetime:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    moment = dt.datetime.fromisoformat(str(value))
    # Filters are read leniently: a time without an offset is taken as UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def conditions(operation: Operation, text: str | None) -> list[Condition]:
    """The ``filter`` parameter as storage conditions, or a 400 with ``source.parameter = filter``."""
    if not text:
        return []
    try:
        terms = parse_filter(text)
    except FilterSyntaxError as exc:
        raise fail(400, "invalid", f"Invalid filter provided: {exc}", parameter="filter") from None
    kinds = FIELD_KINDS.get(operation.operation_id, {})
    out = []
    for op, field, value in terms:
        allowed = operation.filter_operators.get(field)
        if allowed is None or op not in allowed:
            raise fail(
                400,
                "invalid",
                f"'{op}' is not a valid operator for the field '{field}' on {operation.path}.",
                parameter="filter",
            )
        kind = kinds.get(field)
        if kind is None or op == "has":
            raise fail(400, "invalid", f"The emulator does not implement filtering on '{field}'.", parameter="filter")
        try:
            out.append(Condition(field, op, _convert(kind, op, value)))
        except ValueError:
            raise fail(
                400, "invalid", f"Invalid value {value!r} for '{field}' in {op}(...).", parameter="filter"
            ) from None
    return out


def _convert(kind: str, op: str, value: Any) -> Any:
    if op == "any":
        if not isinstance(value, list) or not value:
            raise ValueError
        return [_convert(kind, "equals", v) for v in value]
    if kind == "text":
        if not isinstance(value, str) or isinstance(value, _Bare):
            raise ValueError
        return str(value)
    moment = _moment(value)
    return int(moment.timestamp() // 1) if kind == "epoch" else iso(moment)
