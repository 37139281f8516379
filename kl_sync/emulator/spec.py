"""Klaviyo's OpenAPI slices (revision 2026-07-15, MIT, copied in ``spec/``) turned into what the emulator checks.

Each operation the emulator serves is read from its own ``spec/<operation_id>.json``: method, path,
rate limits (``x-klaviyo-ratelimit``), query parameters, page sizes, the allowed filter fields, and the
request-body schema. The body schema is converted from OpenAPI 3.0 to plain JSON Schema
(:func:`to_json_schema`) and compiled into a fast validator (:class:`BodyValidator`): a 1,000-event
bulk body is about 20,000 JSON nodes, which ``jsonschema`` checks in ~300 ms on this kind of machine
and the compiled form in ~15 ms. The tests check that both agree (``jsonschema`` is the oracle).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

from kl_sync.constants import JSON_API  # noqa: F401  (the emulator's modules take it from here)

SPEC_DIR = Path(__file__).with_name("spec")

#: Operations the emulator serves, by operationId: one file ``spec/<operationId>.json`` each, so a new
#: endpoint's slice is a new file there (and its route, in :mod:`kl_sync.emulator.routes`).
OPERATION_IDS = tuple(sorted(path.stem for path in SPEC_DIR.glob("*.json")))

_WINDOW_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DOC_KEYWORDS = {"description", "example", "default", "format", "title"}


@dataclass(frozen=True)
class RateLimit:
    """One fixed window of ``x-klaviyo-ratelimit``: at most ``limit`` requests per ``seconds``."""

    name: str  # "burst", "steady", "daily"
    limit: int
    seconds: float


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str  # with ``{name}`` placeholders, as in the spec
    rate_limits: tuple[RateLimit, ...]
    #: Query parameters by name, each the spec's parameter object.
    query_parameters: dict[str, dict[str, Any]]
    #: Filter field -> allowed operators, from the spec's ``filter`` parameter description.
    filter_operators: dict[str, frozenset[str]]
    #: ``security: []``: no private key; the account is named by the public key in ``company_id``
    #: (Klaviyo's client-side ``/client/*`` operations).
    public: bool = False
    body_validator: BodyValidator | None = field(repr=False, default=None)

    def page_size(self) -> tuple[int, int] | None:
        """(default, maximum) of ``page[size]`` when the operation takes one."""
        param = self.query_parameters.get("page[size]")
        if param is None:
            return None
        schema = param["schema"]
        return int(schema["default"]), int(schema["maximum"])

    def enum_of(self, parameter: str) -> frozenset[str]:
        """Allowed values of an enumerated (or array-of-enum) query parameter."""
        schema = self.query_parameters[parameter]["schema"]
        values = schema.get("enum") or schema.get("items", {}).get("enum") or ()
        return frozenset(values)


def load_document(operation_id: str, spec_dir: Path = SPEC_DIR) -> dict[str, Any]:
    return json.loads((spec_dir / f"{operation_id}.json").read_text(encoding="utf-8"))


@cache
def operation(operation_id: str) -> Operation:
    """The emulator's view of one spec slice (read once per process)."""
    document = load_document(operation_id)
    ((path, methods),) = document["paths"].items()
    ((method, op),) = methods.items()
    params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "query"}
    validator = None
    body = op.get("requestBody")
    if body is not None:
        ref = body["content"][JSON_API]["schema"]
        validator = BodyValidator(to_json_schema(ref, document["components"]["schemas"], strict=True))
    return Operation(
        operation_id=operation_id,
        method=method.upper(),
        path=path,
        rate_limits=parse_rate_limits(op.get("x-klaviyo-ratelimit", {})),
        query_parameters=params,
        filter_operators=parse_filter_operators(params.get("filter", {}).get("description", "")),
        public=op.get("security", document.get("security")) == [],
        body_validator=validator,
    )


def parse_rate_limits(spec: dict[str, str]) -> tuple[RateLimit, ...]:
    """``{"burst": "10/s", "steady": "150/m"}`` -> windows, shortest first."""
    windows = []
    for name, text in spec.items():
        count, unit = text.split("/")
        windows.append(RateLimit(name, int(count), _WINDOW_SECONDS[unit.strip()]))
    return tuple(sorted(windows, key=lambda w: w.seconds))


_ALLOWED_LINE = re.compile(r"`([^`]+)`: ((?:`[^`]+`(?:, )?)+)")


def parse_filter_operators(description: str) -> dict[str, frozenset[str]]:
    """Read "Allowed field(s)/operator(s): `metric_id`: `equals`<br>..." from a filter description."""
    _, _, allowed = description.partition("Allowed field(s)/operator(s):")
    return {
        m.group(1): frozenset(re.findall(r"`([^`]+)`", m.group(2))) for m in _ALLOWED_LINE.finditer(allowed)
    }


# --- OpenAPI 3.0 -> JSON Schema -------------------------------------------------------------------


def to_json_schema(node: Any, components: dict[str, Any], *, strict: bool) -> Any:
    """Inline ``$ref``s, turn ``nullable`` into a ``null`` type and drop documentation keywords.

    With ``strict``, an object that declares ``properties`` gets ``additionalProperties: false``:
    Klaviyo answers an unknown attribute with a 400, so the emulator does too (requests only;
    responses are read with ``strict=False``).
    """

    def convert(n: Any, depth: int) -> Any:
        if depth > 64:
            raise ValueError("schema nests too deep (recursive $ref?)")
        if isinstance(n, list):
            return [convert(x, depth + 1) for x in n]
        if not isinstance(n, dict):
            return n
        if "$ref" in n:
            name = n["$ref"].rsplit("/", 1)[1]
            out = convert(components[name], depth + 1)
            return _nullable(out) if n.get("nullable") else out
        out = {}
        for key, value in n.items():
            if key in _DOC_KEYWORDS or key == "nullable":
                continue
            if key == "properties":
                out[key] = {name: convert(sub, depth + 1) for name, sub in value.items()}
            else:
                out[key] = convert(value, depth + 1)
        if strict and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return _nullable(out) if n.get("nullable") else out

    return convert(node, 0)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        out = dict(schema, type=[kind, "null"])
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        return out
    return {"anyOf": [schema, {"type": "null"}]}


# --- compiled validator ---------------------------------------------------------------------------

#: A JSON path as a linked list (parent, key) so descending costs one small tuple, not a copy.
_LinkedPath = tuple | None
Check = Callable[[Any, _LinkedPath, list], None]

_SUPPORTED = {"type", "enum", "properties", "required", "additionalProperties", "items", "oneOf", "anyOf", "allOf"}
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int, float),
    "number": (int, float),
    "null": (type(None),),
}


@dataclass(frozen=True)
class SchemaError:
    """One violation: ``path`` is the offending value's location (for ``required`` and
    ``additionalProperties``, the missing or unknown key's own location)."""

    path: tuple[str | int, ...]
    keyword: str
    message: str


def _unlink(path: _LinkedPath) -> tuple[str | int, ...]:
    keys = []
    while path is not None:
        path, key = path
        keys.append(key)
    return tuple(reversed(keys))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_checker(names: list[str]) -> Callable[[Any], bool]:
    py_types: tuple[type, ...] = ()
    for name in names:
        py_types += _PY_TYPES[name]
    allow_bool = "boolean" in names
    whole_only = "integer" in names and "number" not in names

    def type_ok(value: Any) -> bool:
        if value.__class__ is bool:
            return allow_bool
        if not isinstance(value, py_types):
            return False
        if whole_only and value.__class__ is float and not value.is_integer():
            return False
        return True

    return type_ok


def _compile(schema: dict[str, Any]) -> Check:
    unknown = set(schema) - _SUPPORTED
    if unknown:
        raise ValueError(f"schema keywords the emulator cannot check: {sorted(unknown)}")
    kind = schema.get("type")
    names = [kind] if isinstance(kind, str) else list(kind or [])
    type_ok = _type_checker(names) if names else None
    type_label = " or ".join(repr(n) for n in names)
    enum = schema.get("enum")
    props = [(name, _compile(sub)) for name, sub in schema.get("properties", {}).items()]
    known = frozenset(schema.get("properties", {}))
    closed = schema.get("additionalProperties") is False
    if "additionalProperties" in schema and schema["additionalProperties"] is not False:
        raise ValueError("only additionalProperties: false is supported")
    required = tuple(schema.get("required", ()))
    items = _compile(schema["items"]) if "items" in schema else None
    one_of = [_compile(s) for s in schema.get("oneOf", ())]
    any_of = [_compile(s) for s in schema.get("anyOf", ())]
    all_of = [_compile(s) for s in schema.get("allOf", ())]

    if not (props or closed or required or items or one_of or any_of or all_of):
        return _leaf(type_ok, type_label, enum)

    def check(value: Any, path: _LinkedPath, errors: list) -> None:
        if type_ok is not None and not type_ok(value):
            errors.append(SchemaError(_unlink(path), "type", f"{_short(value)} is not of type {type_label}"))
            return
        if enum is not None and value not in enum:
            errors.append(SchemaError(_unlink(path), "enum", f"{_short(value)} is not one of {enum!r}"))
        if value.__class__ is dict:
            for name in required:
                if name not in value:
                    errors.append(SchemaError(_unlink((path, name)), "required", f"'{name}' is a required property"))
            if closed:
                for key in value:
                    if key not in known:
                        errors.append(
                            SchemaError(_unlink((path, key)), "additionalProperties", f"'{key}' is not a valid field")
                        )
            for name, sub in props:
                if name in value:
                    sub(value[name], (path, name), errors)
        elif items is not None and value.__class__ is list:
            for index, item in enumerate(value):
                items(item, (path, index), errors)
        if one_of:
            passed = sum(1 for sub in one_of if _passes(sub, value))
            if passed != 1:
                message = f"{_short(value)} is not valid under exactly one of the schemas"
                errors.append(SchemaError(_unlink(path), "oneOf", message))
        if any_of and not any(_passes(sub, value) for sub in any_of):
            errors.append(SchemaError(_unlink(path), "anyOf", f"{_short(value)} is not valid under any of the schemas"))
        for sub in all_of:
            sub(value, path, errors)

    return check


def _leaf(type_ok: Callable[[Any], bool] | None, type_label: str, enum: list | None) -> Check:
    """A leaf schema (type and enum only): the common case, kept to two tests."""

    def check_leaf(value: Any, path: _LinkedPath, errors: list) -> None:
        if type_ok is not None and not type_ok(value):
            errors.append(SchemaError(_unlink(path), "type", f"{_short(value)} is not of type {type_label}"))
        elif enum is not None and value not in enum:
            errors.append(SchemaError(_unlink(path), "enum", f"{_short(value)} is not one of {enum!r}"))

    return check_leaf


def _passes(check: Check, value: Any) -> bool:
    errors: list = []
    check(value, None, errors)
    return not errors


class BodyValidator:
    """A request-body schema compiled once; :meth:`errors` lists every violation in document order."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        self._check = _compile(schema)

    def errors(self, body: Any) -> list[SchemaError]:
        found: list[SchemaError] = []
        self._check(body, None, found)
        return found
