"""The test oracle: Klaviyo's official OpenAPI slices (revision 2026-07-15, MIT), as the package ships
them in ``kl_sync/emulator/spec/``, checked with ``jsonschema``.

    from tests.spec_oracle import assert_valid_request, assert_journal_bodies_valid, assert_response_valid
    assert_valid_request("bulk_create_events", body)
    assert_journal_bodies_valid(emulator.journal())
    assert_response_valid("get_events", response)

It is independent of both the client and the emulator: it reads each slice itself and makes one
conversion of its schemas to JSON Schema (Draft 2020-12, ``$ref`` resolved by ``jsonschema`` through
``$defs``), OpenAPI 3.0's ``nullable: true`` becoming "or null". Requests are read strictly by
default: an object that lists its properties accepts no others, so a misspelt attribute
(``backfil``) fails here instead of being silently ignored (Klaviyo answers an unknown attribute with
a 400); free-form objects (event ``properties``) stay free. Responses are read loosely.
:func:`request_errors` also checks formats (``date-time``); :func:`request_validator`, which the
emulator's compiled validator is compared with, does not (the emulator checks times in its rules).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

import jsonschema

from kl_sync.emulator.spec import SPEC_DIR


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
    out = {
        key: ({name: _convert(s, strict) for name, s in value.items()} if key == "properties" else _convert(value, strict))
        for key, value in node.items()
        if key not in ("nullable", "example")
    }
    if "$ref" in out:
        out["$ref"] = out["$ref"].replace("#/components/schemas/", "#/$defs/")
    if strict and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable") is True:
        return {"anyOf": [out, {"type": "null"}]}
    return out


@cache
def body_schema(operation_id: str, status: int | None = None, *, strict: bool = True) -> dict[str, Any]:
    """The operation's request-body schema (``status`` None) or the body schema of its answer with
    ``status``, as plain JSON Schema."""
    document = _document(operation_id)
    _, _, op = operation(operation_id)
    if status is None:
        if op.get("requestBody") is None:
            raise ValueError(f"{operation_id} takes no request body")
        content = op["requestBody"]["content"]
    else:
        content = op["responses"][str(status)]["content"]
    schema = _convert(content["application/vnd.api+json"]["schema"], strict)
    schema["$defs"] = {name: _convert(s, strict) for name, s in document["components"]["schemas"].items()}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@cache
def validator(
    operation_id: str, status: int | None = None, *, strict: bool = True, formats: bool = False
) -> jsonschema.Draft202012Validator:
    schema = body_schema(operation_id, status, strict=strict)
    jsonschema.Draft202012Validator.check_schema(schema)
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER if formats else None
    return jsonschema.Draft202012Validator(schema, format_checker=checker)


def request_validator(operation_id: str) -> jsonschema.Draft202012Validator:
    """The strict request-body validator, formats unchecked (what the emulator's schema check covers)."""
    return validator(operation_id)


def request_errors(operation_id: str, body: Any, *, strict: bool = True) -> list[str]:
    """Every way ``body`` breaks the spec, formats included, as ``pointer: message`` lines (empty when valid)."""
    found = validator(operation_id, strict=strict, formats=True).iter_errors(body)
    lines = []
    for error in sorted(found, key=lambda e: list(map(str, e.absolute_path))):
        # "not valid under any of the given schemas" (a nullable field) hides the real reason.
        reason = " / ".join(e.message for e in error.context) if error.context else error.message
        lines.append("/" + "/".join(str(p) for p in error.absolute_path) + f": {reason}")
    return lines


def assert_valid_request(operation_id: str, body: Any, *, strict: bool = True) -> None:
    """Fail with every violation when ``body`` is not a valid request body for ``operation_id``."""
    problems = request_errors(operation_id, body, strict=strict)
    assert not problems, f"{operation_id} body breaks the spec:\n  " + "\n  ".join(problems[:20])


def assert_response_valid(operation_id: str, response: Any) -> None:
    """The response's status is one the spec lists, and its body matches that status's schema."""
    _, _, op = operation(operation_id)
    status = response.status_code
    assert str(status) in op["responses"], f"{operation_id} does not answer {status}"
    if op["responses"][str(status)].get("content"):
        assert response.headers["content-type"].startswith("application/vnd.api+json")
        found = validator(operation_id, status, strict=False).iter_errors(response.json())
        errors = sorted(found, key=str)
        assert not errors, f"{operation_id} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"
    else:
        assert response.content == b""


def assert_error_body(response: Any) -> None:
    """Klaviyo's ClientError / ServerError shape."""
    body = response.json()
    assert set(body) == {"errors"} and body["errors"]
    for error in body["errors"]:
        assert {"id", "code", "title", "detail"} <= set(error)
        assert error["status"] == response.status_code or response.status_code == 400


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
