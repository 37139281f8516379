"""The emulator's HTTP app: Klaviyo's endpoints that kl-sync uses, with Klaviyo's rules and answers.

Every request to a known endpoint goes through :func:`_gate` (auth, revision, query parameters,
rate windows, injected faults) and then its handler, whose body parsing, rule checks and storage
run in a worker thread. Errors are :class:`~kl_sync.emulator.errors.KlaviyoError` answered with
Klaviyo's error body; unknown paths get Klaviyo's 404, the retired ``/api/track`` and
``/api/identify`` a 410.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from kl_sync.emulator import filters, rules
from kl_sync.emulator.connections import drop_connection
from kl_sync.emulator.errors import KlaviyoError, Problem, fail, invalid
from kl_sync.emulator.faults import Fault, FaultPlan, FaultSpec
from kl_sync.emulator.journal import Journal, JournalMiddleware, context_of
from kl_sync.emulator.limits import RateLimiter
from kl_sync.emulator.resources import (
    API_INTEGRATION,
    event_resource,
    import_job_resource,
    list_resource,
    metric_resource,
    profile_resource,
    suppression_job_resource,
)
from kl_sync.emulator.spec import Operation, operation
from kl_sync.emulator.storage import (
    EventWrite,
    Page,
    ProfileWrite,
    Store,
    StoreProblem,
    Tx,
    decode_cursor,
    utc_now,
)

JSON_API = "application/vnd.api+json"
EARLIEST_REVISION = dt.date(2022, 10, 17)  # Klaviyo's first GA revision
_REVISION = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z0-9]+)?$")
_ACCEPTED_BODY_TYPES = ("application/vnd.api+json", "application/json")
METRICS_PAGE_SIZE = 200  # get_metrics: "Returns a maximum of 200 results per page."


@dataclass(frozen=True)
class EmulatorConfig:
    api_keys: tuple[str, ...] = ("pk_test",)
    forbidden_keys: tuple[str, ...] = ()
    public_key: str = "PUBKEY"
    rate_limits: str = "off"  # "off" | "real"
    rate_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.rate_limits not in ("off", "real"):
            raise ValueError("rate_limits must be 'off' or 'real'")
        if self.rate_scale <= 0:
            raise ValueError("rate_scale must be positive")
        if not self.api_keys:
            raise ValueError("the emulator needs at least one accepted API key")


@dataclass
class Emulator:
    """What one emulator holds; reachable as ``app.state.emulator``."""

    data_dir: Path
    config: EmulatorConfig
    store: Store
    journal: Journal
    faults: FaultPlan
    limiter: RateLimiter | None

    def close(self) -> None:
        self.store.close()
        self.journal.close()


class ConnectionDropped(Exception):
    """Raised to answer a request by resetting its connection."""


class DroppedConnection(Response):
    """A "response" that resets the TCP connection instead of answering."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        context_of(scope).finish(None)
        if await drop_connection(scope):
            return
        # Not served by our protocol (e.g. a test client): say so rather than pretend.
        error = fail(500, "error", "The emulator was asked to drop this connection but cannot here.")
        body = json.dumps(error.body()).encode()
        await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", JSON_API.encode())]})
        await send({"type": "http.response.body", "body": body})


def api_response(document: dict[str, Any] | None, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    if document is None:
        return Response(status_code=status, headers=headers)
    body = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return Response(content=body, status_code=status, media_type=JSON_API, headers=headers)


# --- per-request gate ------------------------------------------------------------------------------


@dataclass
class Call:
    """One admitted request: its operation, the headers to add, whether to drop after committing."""

    emulator: Emulator
    request: Request
    operation: Operation
    headers: dict[str, str] = field(default_factory=dict)
    drop_after_commit: bool = False

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
            body, problems = _checked_body(self.operation, raw, content_type)
            context_of(self.request.scope).body = body
            return work(body, problems)

        return self.finish(await run_in_threadpool(parse_then_work))

    async def read(self, work: Callable[[], Response]) -> Response:
        return self.finish(await run_in_threadpool(work))


def _checked_body(op: Operation, raw: bytes, content_type: str) -> tuple[Any, list[Problem]]:
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type not in _ACCEPTED_BODY_TYPES:
        raise fail(
            415, "unsupported_media_type", f"Unsupported media type {media_type or '(none)'!r}; send {JSON_API}."
        )
    rules.check_size(op, raw)
    body = rules.parse_json(raw)
    return body, rules.shape_problems(op, body, raw)


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


async def _gate(request: Request, operation_id: str, *, public: bool = False) -> Call:
    emulator: Emulator = request.app.state.emulator
    op = operation(operation_id)
    if public:
        _check_company(emulator, request)
    else:
        _check_auth(emulator, request)
    _check_revision(request)
    _check_query(op, request)
    call = Call(emulator, request, op)
    if emulator.limiter is not None:
        admission = emulator.limiter.admit(op.operation_id, op.rate_limits)
        if not admission.admitted:
            wait = admission.headers["Retry-After"]
            raise KlaviyoError(
                [Problem(429, "throttled", f"Request was throttled. Expected available in {wait} second(s).")],
                headers=admission.headers,
            )
        call.headers = admission.headers
    request.state.rate_headers = call.headers
    fault = emulator.faults.draw(request.method, request.url.path)
    if fault is not None:
        context_of(request.scope).fault = fault.kind
        await _inject(call, fault)
    return call


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
        raise KlaviyoError(
            [Problem(429, "throttled", f"Request was throttled. Expected available in {wait} second(s).")],
            headers={"Retry-After": wait},
        )
    else:
        status = fault.status or 500
        code = {503: "service_unavailable"}.get(status, "error" if status >= 500 else "invalid")
        raise fail(status, code, f"Injected fault: HTTP {status}.")


def _collection(call: Call, page: Page, data: list[dict[str, Any]], included: list | None = None) -> Response:
    request = call.request
    base = call.base_url
    params = [(k, v) for k, v in request.query_params.multi_items()]
    links = {"self": f"{base}{request.url.path}" + (f"?{urlencode(params)}" if params else "")}
    if page.next_cursor is not None:
        following = [(k, v) for k, v in params if k != "page[cursor]"] + [("page[cursor]", page.next_cursor)]
        links["next"] = f"{base}{request.url.path}?{urlencode(following)}"
    document: dict[str, Any] = {"data": data, "links": links}
    if included is not None:
        document["included"] = included
    return api_response(document)


def _page_args(call: Call) -> tuple[str | None, list[Any] | None, int]:
    """(sort, key the page starts after, page size) from the query."""
    params = call.request.query_params
    after = None
    if "page[cursor]" in params:
        try:
            after = decode_cursor(params["page[cursor]"])
        except ValueError as exc:
            raise fail(400, "invalid", f"Invalid page cursor: {exc}.", parameter="page[cursor]") from None
    sizes = call.operation.page_size()
    size = int(params["page[size]"]) if "page[size]" in params else (sizes[0] if sizes else METRICS_PAGE_SIZE)
    return params.get("sort"), after, size


# --- writes ----------------------------------------------------------------------------------------


def _store_profiles(tx: Tx, profiles: list[ProfileWrite], source: str) -> dict[int, str]:
    """Upsert each profile; every conflict is reported at once (and the transaction rolled back)."""
    ids: dict[int, str] = {}
    problems = []
    tx.prefetch(profiles)
    for profile in profiles:
        try:
            ids[id(profile)], _ = tx.upsert_profile(profile, source)
        except StoreProblem as exc:
            problems.append(exc.problem)
    if problems:
        raise invalid(problems)
    return ids


def _store_events(store: Store, read: rules.Read, source: str, problems: list[Problem]) -> None:
    rules.raise_problems(problems + read.problems)
    with store.transaction() as tx:
        ids = _store_profiles(tx, read.profiles, source)
        events: list[tuple[EventWrite, str]] = [(event, ids[id(event.profile)]) for event in read.events]
        tx.add_events(events)


# --- the app ---------------------------------------------------------------------------------------


def create_app(
    data_dir: str | Path,
    *,
    api_keys: Iterable[str] = ("pk_test",),
    forbidden_keys: Iterable[str] = (),
    public_key: str = "PUBKEY",
    rate_limits: str = "off",
    rate_scale: float = 1.0,
    faults: FaultSpec | None = None,
) -> FastAPI:
    """A Klaviyo emulator over ``data_dir`` (created if missing; reused if it holds an account)."""
    config = EmulatorConfig(tuple(api_keys), tuple(forbidden_keys), public_key, rate_limits, rate_scale)
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    emulator = Emulator(
        data_dir=data_dir,
        config=config,
        store=Store(data_dir / "emulator.db"),
        journal=Journal(data_dir / "journal.jsonl"),
        faults=FaultPlan(faults),
        limiter=RateLimiter(rate_scale) if rate_limits == "real" else None,
    )
    app = FastAPI(title="Klaviyo emulator (kl-sync)", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = emulator
    store = emulator.store

    @app.exception_handler(KlaviyoError)
    async def klaviyo_error(request: Request, exc: KlaviyoError) -> Response:
        headers = dict(exc.headers)
        if exc.http_status != 429:
            headers.update(getattr(request.state, "rate_headers", {}))
        return api_response(exc.body(), exc.http_status, headers)

    @app.exception_handler(ConnectionDropped)
    async def connection_dropped(request: Request, exc: ConnectionDropped) -> Response:
        return DroppedConnection()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            error = fail(405, "method_not_allowed", f'Method "{request.method}" not allowed.')
            return api_response(error.body(), 405, dict(exc.headers or {}))
        error = fail(exc.status_code, "not_found", f"The path {request.url.path} could not be found.")
        return api_response(error.body(), exc.status_code)

    @app.api_route("/api/track", methods=["GET", "POST"])
    @app.api_route("/api/identify", methods=["GET", "POST"])
    async def retired(request: Request) -> Response:
        error = fail(410, "gone", "This legacy API was retired on 2024-06-30; use /api/events or /client/events.")
        return api_response(error.body(), 410)

    # events ----------------------------------------------------------------------------------------

    @app.post("/api/event-bulk-create-jobs")
    async def bulk_create_events(request: Request) -> Response:
        call = await _gate(request, "bulk_create_events")

        def work(body: Any, problems: list[Problem]) -> Response:
            _store_events(store, rules.read_bulk_events(body, utc_now()), "server", problems)
            return api_response(None, 202)

        return await call.run(work)

    @app.post("/api/events")
    async def create_event(request: Request) -> Response:
        call = await _gate(request, "create_event")

        def work(body: Any, problems: list[Problem]) -> Response:
            _store_events(store, rules.read_single_event(body, utc_now(), "server"), "server", problems)
            return api_response(None, 202)

        return await call.run(work)

    @app.post("/client/events")
    async def create_client_event(request: Request) -> Response:
        call = await _gate(request, "create_client_event", public=True)

        def work(body: Any, problems: list[Problem]) -> Response:
            _store_events(store, rules.read_single_event(body, utc_now(), "client"), "client", problems)
            return api_response(None, 202)

        return await call.run(work)

    @app.get("/api/events")
    async def get_events(request: Request) -> Response:
        call = await _gate(request, "get_events")
        params = request.query_params

        def work() -> Response:
            conditions = filters.conditions(call.operation, params.get("filter"))
            sort, after, size = _page_args(call)
            page = store.page_events(conditions, sort, after, size)
            base = call.base_url
            data = [event_resource(row, base, params.get("fields[event]")) for row in page.rows]
            included = None
            include = set(filter(None, (params.get("include") or "").split(",")))
            if include:
                included = []
                if "metric" in include:
                    metrics = store.metrics_by_id(sorted({row["metric_id"] for row in page.rows}))
                    included += [metric_resource(m, base, params.get("fields[metric]")) for m in metrics.values()]
                if "profile" in include:
                    profiles = store.profiles_by_id(sorted({row["profile_id"] for row in page.rows}))
                    fields = params.get("fields[profile]")
                    included += [profile_resource(p, base, fields=fields) for p in profiles.values()]
            return _collection(call, page, data, included)

        return await call.read(work)

    @app.get("/api/metrics")
    async def get_metrics(request: Request) -> Response:
        call = await _gate(request, "get_metrics")
        params = request.query_params

        def work() -> Response:
            conditions = filters.conditions(call.operation, params.get("filter"))
            _, after, size = _page_args(call)
            page = store.page_metrics(after, size)
            # Every metric here came in through the API, so it belongs to the "API" integration.
            if any(c.value != API_INTEGRATION[c.field.split(".")[1]] for c in conditions):
                page = Page([], None)
            data = [metric_resource(row, call.base_url, params.get("fields[metric]")) for row in page.rows]
            return _collection(call, page, data)

        return await call.read(work)

    # profiles --------------------------------------------------------------------------------------

    @app.post("/api/profile-import")
    async def create_or_update_profile(request: Request) -> Response:
        call = await _gate(request, "create_or_update_profile")
        additional = (request.query_params.get("additional-fields[profile]") or "").split(",")

        def work(body: Any, problems: list[Problem]) -> Response:
            read = rules.read_profile_upsert(body)
            rules.raise_problems(problems + read.problems)
            with store.transaction() as tx:
                try:
                    profile_id, created = tx.upsert_profile(read.profiles[0])
                except StoreProblem as exc:
                    raise invalid([exc.problem]) from None
            row = store.profiles_by_id([profile_id])[profile_id]
            email = json.loads(row["attributes"]).get("email")
            suppression = store.suppressions_by_email([email] if email else []).get((email or "").lower())
            resource = profile_resource(
                row, call.base_url, suppression=suppression, additional=additional,
                fields=request.query_params.get("fields[profile]"),
            )
            return api_response({"data": resource, "links": resource["links"]}, 201 if created else 200)

        return await call.run(work)

    @app.get("/api/profiles")
    async def get_profiles(request: Request) -> Response:
        call = await _gate(request, "get_profiles")
        params = request.query_params
        additional = (params.get("additional-fields[profile]") or "").split(",")

        def work() -> Response:
            conditions = filters.conditions(call.operation, params.get("filter"))
            sort, after, size = _page_args(call)
            page = store.page_profiles(conditions, sort, after, size)
            emails = [json.loads(row["attributes"]).get("email") for row in page.rows]
            suppressed = store.suppressions_by_email([e for e in emails if e])
            data = [
                profile_resource(
                    row,
                    call.base_url,
                    suppression=suppressed.get((email or "").lower()),
                    additional=additional,
                    fields=params.get("fields[profile]"),
                )
                for row, email in zip(page.rows, emails)
            ]
            return _collection(call, page, data)

        return await call.read(work)

    @app.post("/api/profile-bulk-import-jobs")
    async def bulk_import_profiles(request: Request) -> Response:
        call = await _gate(request, "bulk_import_profiles")

        def work(body: Any, problems: list[Problem]) -> Response:
            read, list_ids = rules.read_profile_import(body)
            problems = problems + read.problems
            with store.transaction() as tx:
                for index, list_id in enumerate(list_ids):
                    if not tx.list_exists(list_id):
                        problems.append(
                            Problem(404, "not_found", f"No list with id {list_id!r}.",
                                    pointer=f"/data/relationships/lists/data/{index}/id")
                        )
                rules.raise_problems(problems)
                ids = _store_profiles(tx, read.profiles, "server")
                profile_ids = list(dict.fromkeys(ids[id(p)] for p in read.profiles))
                for list_id in list_ids:
                    tx.add_list_members(list_id, profile_ids)
                job_id = tx.create_job(
                    "profile-bulk-import-job",
                    total=len(read.profiles),
                    completed=len(read.profiles),
                    list_ids=list_ids,
                    profile_ids=profile_ids,
                )
            job = store.job("profile-bulk-import-job", job_id)
            resource = import_job_resource(job, call.base_url, just_created=True)
            return api_response({"data": resource, "links": resource["links"]}, 202)

        return await call.run(work)

    @app.get("/api/profile-bulk-import-jobs/{job_id}")
    async def get_bulk_import_profiles_job(request: Request, job_id: str) -> Response:
        call = await _gate(request, "get_bulk_import_profiles_job")

        def work() -> Response:
            job = store.job("profile-bulk-import-job", job_id)
            if job is None:
                raise fail(404, "not_found", f"No profile-bulk-import-job with id {job_id!r}.")
            resource = import_job_resource(job, call.base_url)
            document: dict[str, Any] = {"data": resource, "links": resource["links"]}
            if "lists" in (request.query_params.get("include") or "").split(","):
                lists = store.lists_by_id(json.loads(job["list_ids"]))
                fields = request.query_params.get("fields[list]")
                document["included"] = [list_resource(row, call.base_url, fields) for row in lists.values()]
            return api_response(document)

        return await call.read(work)

    # suppressions ----------------------------------------------------------------------------------

    @app.post("/api/profile-suppression-bulk-create-jobs")
    async def bulk_suppress_profiles(request: Request) -> Response:
        call = await _gate(request, "bulk_suppress_profiles")

        def work(body: Any, problems: list[Problem]) -> Response:
            asked = rules.read_suppression(body)
            problems = problems + asked.problems
            if asked.segment_id is not None:
                problems.append(
                    Problem(404, "not_found", f"No segment with id {asked.segment_id!r}.",
                            pointer="/data/relationships/segment/data/id")
                )
            with store.transaction() as tx:
                if asked.list_id is not None and not tx.list_exists(asked.list_id):
                    problems.append(
                        Problem(404, "not_found", f"No list with id {asked.list_id!r}.",
                                pointer="/data/relationships/list/data/id")
                    )
                rules.raise_problems(problems)
                targets: list[tuple[str, str]] = []
                for email, where in asked.emails:
                    # "If a profile is not found with the given email, one will be created."
                    write = ProfileWrite(where, None, {"email": email}, {}, None)
                    try:
                        profile_id, _ = tx.upsert_profile(write)
                    except StoreProblem as exc:
                        raise invalid([exc.problem]) from None
                    targets.append((email, profile_id))
                if asked.list_id is not None:
                    targets += tx.list_member_emails(asked.list_id)
                added = sum(1 for email, profile_id in targets if tx.suppress(email, profile_id))
                job_id = tx.create_job(
                    "profile-suppression-bulk-create-job",
                    total=len(targets),
                    completed=added,
                    skipped=len(targets) - added,
                    list_ids=[asked.list_id] if asked.list_id else [],
                )
            job = store.job("profile-suppression-bulk-create-job", job_id)
            resource = suppression_job_resource(job, call.base_url, just_created=True)
            return api_response({"data": resource, "links": resource["links"]}, 202)

        return await call.run(work)

    @app.get("/api/profile-suppression-bulk-create-jobs/{job_id}")
    async def get_bulk_suppress_profiles_job(request: Request, job_id: str) -> Response:
        call = await _gate(request, "get_bulk_suppress_profiles_job")

        def work() -> Response:
            job = store.job("profile-suppression-bulk-create-job", job_id)
            if job is None:
                raise fail(404, "not_found", f"No profile-suppression-bulk-create-job with id {job_id!r}.")
            resource = suppression_job_resource(job, call.base_url)
            return api_response({"data": resource, "links": resource["links"]})

        return await call.read(work)

    # lists -----------------------------------------------------------------------------------------

    @app.post("/api/lists")
    async def create_list(request: Request) -> Response:
        call = await _gate(request, "create_list")

        def work(body: Any, problems: list[Problem]) -> Response:
            name, opt_in, found = rules.read_list_create(body)
            rules.raise_problems(problems + found)
            with store.transaction() as tx:
                list_id = tx.create_list(name, opt_in)
            row = store.lists_by_id([list_id])[list_id]
            resource = list_resource(row, call.base_url, request.query_params.get("fields[list]"))
            return api_response({"data": resource, "links": resource["links"]}, 201)

        return await call.run(work)

    @app.get("/api/lists")
    async def get_lists(request: Request) -> Response:
        call = await _gate(request, "get_lists")
        params = request.query_params

        def work() -> Response:
            conditions = filters.conditions(call.operation, params.get("filter"))
            sort, after, size = _page_args(call)
            page = store.page_lists(conditions, sort, after, size)
            data = [list_resource(row, call.base_url, params.get("fields[list]")) for row in page.rows]
            return _collection(call, page, data)

        return await call.read(work)

    @app.post("/api/lists/{list_id}/relationships/profiles")
    async def add_profiles_to_list(request: Request, list_id: str) -> Response:
        call = await _gate(request, "add_profiles_to_list")

        def work(body: Any, problems: list[Problem]) -> Response:
            members, found = rules.read_list_members(body)
            problems = problems + found
            with store.transaction() as tx:
                if not tx.list_exists(list_id):
                    raise fail(404, "not_found", f"No list with id {list_id!r}.")
                for profile_id, where in members:
                    if not tx.profile_exists(profile_id):
                        problems.append(Problem(404, "not_found", f"No profile with id {profile_id!r}.", pointer=where))
                rules.raise_problems(problems)
                tx.add_list_members(list_id, [profile_id for profile_id, _ in members])
            return api_response(None, 204)

        return await call.run(work)

    app.add_middleware(JournalMiddleware, journal=emulator.journal)
    return app
