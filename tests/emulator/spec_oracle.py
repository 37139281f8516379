"""An oracle for the emulator: Klaviyo's spec slices in ``tests/spec/`` checked with ``jsonschema``.

Independent of ``kl_sync.emulator.spec``: OpenAPI's ``nullable`` becomes ``anyOf [..., null]`` here
and ``$ref``s are resolved by ``jsonschema`` itself. Requests are read strictly (an object that lists
its properties takes no others, as Klaviyo answers unknown attributes with a 400); responses loosely.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"


@cache
def document(operation_id: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / f"{operation_id}.json").read_text(encoding="utf-8"))


def _convert(node: Any, strict: bool) -> Any:
    if isinstance(node, list):
        return [_convert(x, strict) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: (_convert(v, strict) if k != "properties" else {n: _convert(s, strict) for n, s in v.items()})
           for k, v in node.items() if k not in ("nullable", "example", "description")}
    if strict and "properties" in out and "additionalProperties" not in out and "$ref" not in out:
        out["additionalProperties"] = False
    if "$ref" in out and len(out) > 1:
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def _operation(operation_id: str) -> dict[str, Any]:
    ((_, methods),) = document(operation_id)["paths"].items()
    ((_, op),) = methods.items()
    return op


@cache
def request_validator(operation_id: str) -> jsonschema.Draft7Validator:
    doc = document(operation_id)
    ref = _operation(operation_id)["requestBody"]["content"]["application/vnd.api+json"]["schema"]["$ref"]
    schema = {"$ref": ref, "components": {"schemas": _convert(doc["components"]["schemas"], strict=True)}}
    return jsonschema.Draft7Validator(schema)


@cache
def response_validator(operation_id: str, status: int) -> jsonschema.Draft7Validator:
    doc = document(operation_id)
    content = _operation(operation_id)["responses"][str(status)]["content"]
    ref = content["application/vnd.api+json"]["schema"]["$ref"]
    schema = {"$ref": ref, "components": {"schemas": _convert(doc["components"]["schemas"], strict=False)}}
    return jsonschema.Draft7Validator(schema)


def assert_response_valid(operation_id: str, response: Any) -> None:
    """The response's status is one the spec lists, and its body matches that status's schema."""
    op = _operation(operation_id)
    status = response.status_code
    assert str(status) in op["responses"], f"{operation_id} does not answer {status}"
    if op["responses"][str(status)].get("content"):
        assert response.headers["content-type"].startswith("application/vnd.api+json")
        errors = sorted(response_validator(operation_id, status).iter_errors(response.json()), key=str)
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
