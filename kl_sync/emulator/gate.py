"""The gate: what every request to a Klaviyo operation passes before its route does any work.

In order, on the event loop: the private key (``Authorization: Klaviyo-API-Key ...``) or, for the
public operations (``security: []`` in their spec slice, the ``/client/*`` ones), the ``company_id``;
the ``revision`` header; the query parameters the spec slice lists, with their enums and integer
ranges; the account's rate windows (:mod:`.limits`); then an injected fault (:mod:`.faults`). A write's
body is then checked in a worker thread: media type, size, JSON, and the spec's request schema plus
Klaviyo's 100 KB string limit, before its rule (:mod:`.rules`) reads it.

Routes declare their handlers on an :class:`OperationRouter` by operationId
(``@router.write("create_event")``): the method and path come from the operation's spec slice and the
gate runs first. ``--latency`` is not a step of the gate but the app's outermost layer (:mod:`.latency`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import QueryParams
from starlette.responses import Response

from kl_sync.constants import MAX_BODY_BYTES, MAX_PROFILE_BYTES, MAX_STRING_BYTES
from kl_sync.emulator.account import Emulator
from kl_sync.emulator.connections import ConnectionDropped, DroppedConnection
from kl_sync.emulator.errors import ApiProblemError, Problem, fail, pointer
from kl_sync.emulator.faults import Fault
from kl_sync.emulator.journal import context_of
from kl_sync.emulator.spec import JSON_API, Operation, operation
from kl_sync.emulator.storage import Store

EARLIEST_REVISION = dt.date(2022, 10, 17)  # Klaviyo's first GA revision
_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z0-9]+)?$")
_ACCEPTED_BODY_TYPES = ("application/vnd.api+json", "application/json")

# Klaviyo's documented body limits (kl_sync/constants.py, which the client and the suites use too).
# Sizes are decimal (5 MB = 5,000,000 bytes): when the docs are vague, the emulator is the stricter
# side, so a client that passes here also passes at Klaviyo. One profile is at most 100 KB, whichever
# side sends it.
MAX_BODY_BYTES_BY_OPERATION = {"create_or_update_profile": MAX_PROFILE_BYTES, "create_client_profile": MAX_PROFILE_BYTES}


# --- an admitted request ---------------------------------------------------------------------------


@dataclass
class Call:
    """One admitted request: its operation, the headers to add, whether to drop after committing."""

    emulator: Emulator
    request: Request
    operation: Operation
    headers: dict[str, str] = field(default_factory=dict)
    drop_after_commit: bool = False

    @property
    def store(self) -> Store:
        return self.emulator.store

    @property
    def params(self) -> QueryParams:
        return self.request.query_params

    @property
    def path_params(self) -> dict[str, Any]:
        return self.request.path_params

    @property
    def base_url(self) -> str:
        return str(self.request.base_url).rstrip("/")

    def finish(self, response: Response) -> Response:
        if self.drop_after_commit:
            return DroppedConnection()
        response.headers.update(self.headers)
        return response

    async def run(self, work: Callable[[Any, list[Problem]], Response]) -> Response:
        """Parse the body and check its shape, then ``work(body, problems)`` in a worker thread.
        ``work`` adds its own rules' problems and must store nothing unless there are none, so a
        client hears about every bad item of a request at once."""
        raw = context_of(self.request.scope).raw_body
        content_type = self.request.headers.get("content-type", "")

        def parse_then_work() -> Response:
            body, problems = checked_body(self.operation, raw, content_type)
            context_of(self.request.scope).body = body
            return work(body, problems)

        return self.finish(await run_in_threadpool(parse_then_work))

    async def read(self, work: Callable[[], Response]) -> Response:
        return self.finish(await run_in_threadpool(work))


WriteHandler = Callable[[Call, Any, list[Problem]], Response]
ReadHandler = Callable[[Call], Response]


class OperationRouter(APIRouter):
    """An APIRouter whose routes are Klaviyo operations, each behind the gate.

    ``@router.write(operation_id)`` registers ``handler(call, body, problems)``: it runs in a worker
    thread once the body has passed the gate's checks (``problems`` holds the schema's findings; the
    handler adds its rules' and stores nothing unless there are none). ``@router.read(operation_id)``
    registers ``handler(call)``, also in a worker thread."""

    def __init__(self) -> None:
        super().__init__()
        self.operation_ids: list[str] = []

    def write(self, operation_id: str) -> Callable[[WriteHandler], WriteHandler]:
        def register(handler: WriteHandler) -> WriteHandler:
            async def endpoint(request: Request) -> Response:
                call = await admit(request, operation(operation_id))
                return await call.run(lambda body, problems: handler(call, body, problems))

            self._serve(operation_id, endpoint)
            return handler

        return register

    def read(self, operation_id: str) -> Callable[[ReadHandler], ReadHandler]:
        def register(handler: ReadHandler) -> ReadHandler:
            async def endpoint(request: Request) -> Response:
                call = await admit(request, operation(operation_id))
                return await call.read(lambda: handler(call))

            self._serve(operation_id, endpoint)
            return handler

        return register

    def _serve(self, operation_id: str, endpoint: Callable[[Request], Any]) -> None:
        op = operation(operation_id)
        self.add_api_route(op.path, endpoint, methods=[op.method], name=operation_id)
        self.operation_ids.append(operation_id)


# --- the checks, in order --------------------------------------------------------------------------


async def admit(request: Request, op: Operation) -> Call:
    """Check a request against ``op`` and the account; a request that fails raises its answer."""
    emulator: Emulator = request.app.state.emulator
    if op.public:
        _check_company(emulator, request)
    else:
        _check_auth(emulator, request)
    _check_revision(request)
    _check_query(op, request)
    call = Call(emulator, request, op)
    if emulator.rate_windows is not None:
        admission = emulator.rate_windows.admit(op.operation_id, op.rate_limits)
        if not admission.admitted:
            raise _throttled(admission.headers["Retry-After"], admission.headers)
        call.headers = admission.headers
    request.state.rate_headers = call.headers
    fault = emulator.faults.draw(request.method, request.url.path)
    if fault is not None:
        context_of(request.scope).fault = fault.kind
        await _inject(call, fault)
    return call


def _check_auth(emulator: Emulator, request: Request) -> None:
    header = request.headers.get("authorization")
    if not header:
        raise fail(401, "not_authenticated", "Missing or invalid private key.")
    scheme, _, key = header.strip().partition(" ")
    key = key.strip()
    if scheme.lower() != "klaviyo-api-key" or not key:
        raise fail(401, "not_authenticated", "Missing or invalid private key.")
    if any(hmac.compare_digest(key, k) for k in emulator.config.forbidden_keys):
        raise fail(403, "permission_denied", "This API key does not have access to this resource.")
    if not any(hmac.compare_digest(key, k) for k in emulator.config.api_keys):
        raise fail(401, "authentication_failed", "Incorrect authentication credentials.")


def _check_company(emulator: Emulator, request: Request) -> None:
    company = request.query_params.get("company_id")
    if not company:
        raise fail(
            400, "invalid", "The 'company_id' query parameter (public API key) is required.", parameter="company_id"
        )
    if not hmac.compare_digest(company, emulator.config.public_key):
        raise fail(401, "authentication_failed", "Unknown public API key (company_id).", parameter="company_id")


def _check_revision(request: Request) -> None:
    value = request.headers.get("revision")
    if value is None:
        raise fail(400, "invalid", "Missing required header 'revision' (e.g. 2026-07-15).", parameter="revision")
    match = _REVISION.match(value.strip())
    try:
        day = dt.date.fromisoformat(match.group(1)) if match else None
    except ValueError:
        day = None
    if day is None or day < EARLIEST_REVISION:
        raise fail(400, "invalid", f"Invalid revision {value!r}: use YYYY-MM-DD[.suffix].", parameter="revision")


def _check_query(op: Operation, request: Request) -> None:
    for name in request.query_params.keys():
        param = op.query_parameters.get(name)
        if param is None:
            raise fail(400, "invalid", f"'{name}' is not a valid query parameter for {op.path}.", parameter=name)
        schema = param.get("schema", {})
        value = request.query_params[name]
        allowed = schema.get("enum") or schema.get("items", {}).get("enum")
        if allowed:
            for item in value.split(",") if schema.get("type") == "array" else [value]:
                if item not in allowed:
                    raise fail(400, "invalid", f"'{item}' is not a valid value for '{name}'.", parameter=name)
        if schema.get("type") == "integer":
            try:
                number = int(value)
            except ValueError:
                number = None
            if number is None or not schema.get("minimum", number) <= number <= schema.get("maximum", number):
                raise fail(
                    400,
                    "invalid",
                    f"'{name}' must be an integer from {schema.get('minimum')} to {schema.get('maximum')}.",
                    parameter=name,
                )


def _throttled(wait: str, headers: dict[str, str]) -> ApiProblemError:
    return ApiProblemError(
        [Problem(429, "throttled", f"Request was throttled. Expected available in {wait} second(s).")],
        headers=headers,
    )


async def _inject(call: Call, fault: Fault) -> None:
    if fault.kind == "slow":
        await asyncio.sleep(fault.slow_seconds)
    elif fault.kind == "drop":
        raise ConnectionDropped()
    elif fault.kind == "drop_after_commit":
        call.drop_after_commit = True
    elif fault.status == 429:
        seconds = fault.retry_after if fault.retry_after is not None else 1.0
        wait = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:.3f}"
        raise _throttled(wait, {"Retry-After": wait})
    else:
        status = fault.status or 500
        code = {503: "service_unavailable"}.get(status, "error" if status >= 500 else "invalid")
        raise fail(status, code, f"Injected fault: HTTP {status}.")


# --- a write's body --------------------------------------------------------------------------------


def checked_body(op: Operation, raw: bytes, content_type: str) -> tuple[Any, list[Problem]]:
    """The body as JSON and its shape problems; a wrong media type, an oversized or unparsable body
    raises its answer at once."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in _ACCEPTED_BODY_TYPES:
        raise fail(
            415, "unsupported_media_type", f"Unsupported media type {media_type or '(none)'!r}; send {JSON_API}."
        )
    check_size(op, raw)
    body = parse_json(raw)
    return body, shape_problems(op, body, raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The body as JSON; NaN/Infinity (which Python would accept) are not JSON and are refused."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise fail(400, "parse_error", f"JSON parse error - {exc}", pointer="/") from None
    except RecursionError:
        raise fail(400, "parse_error", "JSON parse error - nested too deeply", pointer="/") from None


def check_size(op: Operation, raw: bytes) -> None:
    limit = MAX_BODY_BYTES_BY_OPERATION.get(op.operation_id, MAX_BODY_BYTES)
    if len(raw) > limit:
        raise fail(
            413,
            "payload_too_large",
            f"The request body is {len(raw):,} bytes; {op.path} accepts at most {limit:,}.",
        )


def shape_problems(op: Operation, body: Any, raw: bytes) -> list[Problem]:
    """The spec's request schema, plus Klaviyo's "a single string cannot exceed 100KB"."""
    problems = []
    assert op.body_validator is not None
    for error in op.body_validator.errors(body):
        problems.append(Problem(400, "invalid", error.message, pointer=pointer(error.path)))
    if might_hold_long_string(raw):
        for path, size in long_strings(body):
            problems.append(
                Problem(
                    400, "invalid", f"String is {size:,} bytes; at most {MAX_STRING_BYTES:,} allowed.", pointer(path)
                )
            )
    return problems


def might_hold_long_string(raw: bytes) -> bool:
    """False only when no JSON string in ``raw`` can decode to more than MAX_STRING_BYTES.

    A string never decodes to more bytes than its JSON text (escapes only shrink). With no escaped
    quote in the body, such a string's text is a run of over MAX_STRING_BYTES bytes without a quote
    mark, and any such run covers a whole aligned block of half that size: so if every block holds
    a quote mark, no string is too long. A dozen C-speed searches instead of a walk over 20,000
    values; anything unusual falls back to the exact walk (:func:`long_strings`)."""
    if len(raw) <= MAX_STRING_BYTES:
        return False
    if b'\\"' in raw:
        return True
    block = MAX_STRING_BYTES // 2
    return any(raw.find(b'"', start, start + block) < 0 for start in range(0, len(raw), block))


def long_strings(body: Any) -> list[tuple[tuple, int]]:
    """(path, UTF-8 size) of every string over :data:`MAX_STRING_BYTES`, keys included."""
    found = []
    stack: list[tuple[tuple, Any]] = [((), body)] if body.__class__ in (dict, list) else []
    while stack:
        path, value = stack.pop()
        pairs = value.items() if value.__class__ is dict else enumerate(value)
        for key, item in pairs:
            # A str of n characters is at most 4n UTF-8 bytes: encode only the ones that might be long.
            if key.__class__ is str and len(key) * 4 > MAX_STRING_BYTES:
                size = len(key.encode("utf-8"))
                if size > MAX_STRING_BYTES:
                    found.append(((*path, key), size))
            kind = item.__class__
            if kind is str:
                if len(item) * 4 > MAX_STRING_BYTES:
                    size = len(item.encode("utf-8"))
                    if size > MAX_STRING_BYTES:
                        found.append(((*path, key), size))
            elif kind is dict or kind is list:
                stack.append(((*path, key), item))
    return found
