"""Checks request bodies against Klaviyo's official OpenAPI spec (revision 2026-07-15, MIT; ``tests/spec/``).

    from tests.klaviyo.spec import assert_valid_request, assert_journal_bodies_valid
    assert_valid_request("bulk_create_events", body)
    assert_journal_bodies_valid(emulator.journal())

This is an oracle independent of both the client and the emulator: it reads the spec slice
``tests/spec/<operation_id>.json`` and validates with ``jsonschema`` (Draft 2020-12, ``date-time``
format checked). OpenAPI 3.0's ``nullable: true`` becomes "or null". With ``strict`` (the default) an
object that lists its properties accepts no others, so a misspelt attribute (``backfil``) fails here
instead of being silently ignored; free-form objects (event ``properties``) stay free.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"


@cache
def _document(operation_id: str) -> dict[str, Any]:
    path = SPEC_DIR / f"{operation_id}.json"
    if not path.exists():
        raise FileNotFoundError(f"no spec slice for {operation_id!r} in {SPEC_DIR}")
    return json.loads(path.read_text(encoding="utf-8"))


def operation(operation_id: str) -> tuple[str, str, dict[str, Any]]:
    """(METHOD, path template, operation object) of one spec slice."""
    ((path, methods),) = _document(operation_id)["paths"].items()
    ((method, op),) = ((m, o) for m, o in methods.items() if isinstance(o, dict))
    return method.upper(), path, op


def _convert(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [_convert(item, strict) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _convert(value, strict) for key, value in node.items() if key not in ("nullable", "example")}
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def request_schema(operation_id: str, strict: bool = True) -> dict[str, Any]:
    """The operation's request-body schema as plain JSON Schema (refs resolved through ``$defs``)."""
    document = _document(operation_id)
    _, _, op = operation(operation_id)
    body = op.get("requestBody")
    if body is None:
        raise ValueError(f"{operation_id} takes no request body")
    root = body["content"]["application/vnd.api+json"]["schema"]
    schema = _convert(root, strict)
    schema["$defs"] = {name: _convert(s, strict) for name, s in document["components"]["schemas"].items()}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@cache
def _validator(operation_id: str, strict: bool) -> jsonschema.Draft202012Validator:
    schema = request_schema(operation_id, strict)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def request_errors(operation_id: str, body: Any, *, strict: bool = True) -> list[str]:
    """Every way ``body`` breaks the spec, as ``pointer: message`` lines (empty when valid)."""
    errors = sorted(_validator(operation_id, strict).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    lines = []
    for error in errors:
        # "not valid under any of the given schemas" (a nullable field) hides the real reason.
        reason = " / ".join(e.message for e in error.context) if error.context else error.message
        lines.append("/" + "/".join(str(p) for p in error.absolute_path) + f": {reason}")
    return lines


def assert_valid_request(operation_id: str, body: Any, *, strict: bool = True) -> None:
    """Fail with every violation when ``body`` is not a valid request body for ``operation_id``."""
    problems = request_errors(operation_id, body, strict=strict)
    assert not problems, f"{operation_id} body breaks the spec:\n  " + "\n  ".join(problems[:20])


@cache
def _routes() -> list[tuple[str, re.Pattern[str], str]]:
    routes = []
    for path in sorted(SPEC_DIR.glob("*.json")):
        method, template, _ = operation(path.stem)
        pattern = re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "/?$")
        routes.append((method, pattern, path.stem))
    return routes


def operation_for(method: str, path: str) -> str | None:
    """The operationId serving ``method path`` among the spec slices, or None."""
    for route_method, pattern, operation_id in _routes():
        if route_method == method.upper() and pattern.match(path):
            return operation_id
    return None


def assert_journal_bodies_valid(journal: list[dict[str, Any]], *, strict: bool = True) -> int:
    """Validate the body of every journaled request that has one against its operation; returns how many.

    Entries need ``method``, ``path`` and ``body`` (parsed JSON or a JSON string).
    """
    checked = 0
    for entry in journal:
        body = entry.get("body")
        if body in (None, "", b""):
            continue
        if isinstance(body, (str, bytes)):
            body = json.loads(body)
        operation_id = operation_for(entry["method"], entry["path"])
        assert operation_id is not None, f"journal has a request no spec slice serves: {entry['method']} {entry['path']}"
        assert_valid_request(operation_id, body, strict=strict)
        checked += 1
    return checked
