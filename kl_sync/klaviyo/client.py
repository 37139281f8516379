"""The one place kl-sync talks HTTP to Klaviyo: session, headers, pinned revision, retries, counting.

:meth:`KlaviyoClient.request` runs every call through the same steps: wait for the rate limiter, send,
classify the outcome (:mod:`kl_sync.klaviyo.errors`), and retry only what is retryable, with jittered
exponential backoff that never comes back before Klaviyo's ``Retry-After``; how often and how long is
the request half of the retry policy (:mod:`kl_sync.retry`).

Retrying writes is safe here because every write kl-sync makes is idempotent on Klaviyo's side: events
carry a deterministic ``unique_id`` (Klaviyo keeps one event per profile, metric and unique_id), profile
imports are upserts and suppressions are set-like. So when a connection drops after a POST was sent,
sending it again cannot double anything. The one write that is not idempotent (creating a list) passes
``idempotent=False`` and recovers by looking the list up instead.

The API key lives only inside the auth hook; it is in no repr, record, log line or exception message.
"""

from __future__ import annotations

import copy
import json as jsonlib
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import orjson
import requests
import urllib3.exceptions
from requests.structures import CaseInsensitiveDict

from kl_sync.constants import JSON_API, KLAVIYO_BASE_URL, KLAVIYO_REVISION
from kl_sync.klaviyo.errors import KlaviyoError, RetryableError, error_for_response
from kl_sync.klaviyo.limits import RateLimiter
from kl_sync.klaviyo.stats import ClientStats, RequestRecord
from kl_sync.retry import REQUEST_RETRIES, Retries

log = logging.getLogger(__name__)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kl-sync")
    except PackageNotFoundError:
        return "0+unknown"


USER_AGENT = f"kl-sync/{_version()}"


# One encoder for every call: ``json.dumps`` with options builds a new JSONEncoder each time, and the
# batch builders encode every event and profile once to measure it.
_BODY_ENCODER = jsonlib.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

#: Only the exact JSON types go through orjson: a subclass of one (an IntEnum), a datetime or a
#: dataclass goes on to the standard library, which encodes or refuses it as it always did.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def body_text(body: Any) -> str:
    """A JSON body as text, as the standard library writes it: compact, non-ASCII as is, NaN and
    Infinity refused. :func:`encode_body` sends the same text but for floats below 1e-4, written as
    orjson writes them (``0.00001`` for ``1e-05``, ``1e-7`` for ``1e-07``: the same numbers, a byte
    or two apart)."""
    return _BODY_ENCODER.encode(body)


def encode_body(body: Any) -> bytes:
    """The exact bytes sent for a JSON body. Batch builders measure sizes with this same function.

    orjson writes them, ~15x faster than the standard library: a bulk body's 1,000 events and their
    profiles are each encoded once, about a ninth of the time the sender's preparing thread held the
    interpreter (benchmarks/README.md, benchmark 8). What orjson refuses goes to :func:`body_text`,
    which encodes it or raises as before: an integer beyond 64 bits, a lone surrogate, a key that is
    not text, nesting past 255. orjson writes NaN and Infinity as ``null``, so a body whose bytes hold
    ``null`` is encoded by :func:`body_text` too, which refuses them (``ValueError``). orjson also
    writes a UUID or an Enum member, which the standard library refuses; neither can be in a payload
    decoded from the outbox."""
    try:
        data = orjson.dumps(body, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return body_text(body).encode("utf-8")
    if b"null" in data:
        body_text(body)  # raises for NaN or Infinity, which orjson wrote as null
    return data


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON-shaped value, so a built body never shares a dict or list with its input.

    Dicts and lists of plain values (all a payload decoded from the outbox holds) are copied by a
    direct walk; anything else goes through ``copy.deepcopy``. The walk is ~5× faster than deepcopy,
    which was half the time of building event bodies (benchmarks/README.md).
    """
    kind = type(value)
    if kind is dict:
        # Scalars are kept inline rather than through a call each: most properties are scalars.
        return {key: item if type(item) in _SCALARS else copy_json(item) for key, item in value.items()}
    if kind is list:
        return [item if type(item) in _SCALARS else copy_json(item) for item in value]
    if kind in _SCALARS:
        return value
    return copy.deepcopy(value)


_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class Response:
    """A successful Klaviyo response: status, headers, the parsed JSON body (None when empty)."""

    status: int
    headers: Mapping[str, str]
    json: Any
    #: How many attempts it took (1 when the first one succeeded).
    attempts: int = 1


class _Tried(NamedTuple):
    """What one attempt came to."""

    response: Response | None
    #: HTTP status, or None when no response came back.
    status: int | None
    error: KlaviyoError | None
    #: False when Klaviyo cannot have processed the request (never reached it, or answered 429).
    may_have_been_processed: bool
    started: float
    clock: float


class _KlaviyoKeyAuth(requests.auth.AuthBase):
    """Adds the Authorization header to each prepared request; the key is never printed."""

    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Klaviyo-API-Key {self._api_key}"
        return request

    def __repr__(self) -> str:
        return "_KlaviyoKeyAuth(<hidden>)"


class KlaviyoClient:
    """A Klaviyo API client for one account (one private key). Thread-safe for concurrent requests.

    ``api_key`` may be None only for the public ``/client/...`` endpoints, which must never carry a
    private key (:mod:`kl_sync.klaviyo.client_events`).
    """

    def __init__(
        self,
        api_key: str | None,
        base_url: str = KLAVIYO_BASE_URL,
        revision: str = KLAVIYO_REVISION,
        *,
        timeout: tuple[float, float] = (5.0, 30.0),
        retries: Retries = REQUEST_RETRIES,
        limiter: RateLimiter | None = None,
        on_request: Callable[[RequestRecord], None] | None = None,
    ) -> None:
        if api_key is not None and not api_key.strip():
            raise ValueError("api_key is empty")
        self.base_url = base_url.rstrip("/")
        self.revision = revision
        self.timeout = timeout
        self.retries = retries
        self.limiter = limiter
        self.on_request = on_request
        self.stats = ClientStats()
        self._origin = _origin(self.base_url)
        self._random = random.Random()
        self._session = requests.Session()
        self._session.headers.update(
            {"revision": revision, "Accept": JSON_API, "Content-Type": JSON_API, "User-Agent": USER_AGENT}
        )
        if api_key is not None:
            self._session.auth = _KlaviyoKeyAuth(api_key)

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> KlaviyoClient:
        """A client from :class:`kl_sync.settings.Settings` (``klaviyo_api_key`` is a SecretStr)."""
        from kl_sync.settings import SettingsError

        secret = settings.klaviyo_api_key
        if secret is None or not secret.get_secret_value().strip():
            raise SettingsError("KLAVIYO_API_KEY: not set (a Klaviyo private API key is needed to write)")
        return cls(
            secret.get_secret_value(),
            settings.klaviyo_base_url,
            settings.klaviyo_revision,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self.base_url!r}, revision={self.revision!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> KlaviyoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        json: Any = None,
        encoded: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool = True,
    ) -> Response:
        """Send one call, retrying retryable failures; return the successful :class:`Response`.

        ``path`` is relative to ``base_url`` (``/api/events``) or a full URL on the same origin (a
        ``links.next`` cursor). ``endpoint`` is the operationId, for the rate limiter and the stats.
        With ``idempotent=False`` a failure after the request may have reached Klaviyo (timeout while
        reading, dropped connection, 5xx) is raised at once instead of retried; 429 and failures to
        connect are still retried, since then Klaviyo did not process anything.

        ``encoded`` is ``encode_body(json)`` when the caller already has it (bulk builders assemble it).

        Raises :class:`RetryableError` after ``retries.attempts``, :class:`AuthError` or
        :class:`RejectedError` at once.
        """
        url = self._url(path)
        data = encoded if encoded is not None else None if json is None else encode_body(json)
        attempt = 0
        while True:
            attempt += 1
            tried = self._try_once(method, url, endpoint, data, params, attempt)
            error = tried.error
            if error is None:
                self._record(method, url, endpoint, attempt, tried.status, None, None, tried.started, tried.clock)
                return tried.response  # type: ignore[return-value]
            retry = (
                isinstance(error, RetryableError)
                and attempt < self.retries.attempts
                and (idempotent or not tried.may_have_been_processed)
            )
            backoff = self._backoff(attempt, error.retry_after) if retry else None
            self._record(method, url, endpoint, attempt, tried.status, error, backoff, tried.started, tried.clock)
            if not retry:
                if isinstance(error, RetryableError) and attempt > 1:
                    error.message = f"{error.message} (after {attempt} attempts)"
                    error.args = (error.message,)
                raise error
            log.info("Klaviyo %s: %s; retrying in %.2f s (attempt %d of %d)",
                     endpoint, error.message, backoff, attempt + 1, self.retries.attempts)
            time.sleep(backoff)  # type: ignore[arg-type]

    def _try_once(
        self, method: str, url: str, endpoint: str, data: bytes | None, params: Mapping[str, Any] | None, attempt: int
    ) -> _Tried:
        """One attempt, once the rate limiter lets it go: its response, or its classified error."""
        slot = self.limiter.acquire(endpoint) if self.limiter is not None else None
        started = time.time()
        clock = time.perf_counter()
        try:
            raw = self._session.request(method, url, data=data, params=params, timeout=self.timeout)
        except _TRANSIENT as exc:
            # Not chained (``from exc``): a requests exception holds the prepared request, whose
            # headers carry the key, and exceptions get pickled and shipped (Prefect, workers).
            error = RetryableError(f"Klaviyo {endpoint}: {type(exc).__name__}: {_one_line(str(exc))}", endpoint=endpoint)
            return _Tried(None, None, error, not _never_reached_server(exc), started, clock)
        finally:
            # Answered (or failed): a limiter that counts requests from their answer does so now.
            answered = getattr(self.limiter, "answered", None)
            if answered is not None:
                answered(endpoint, slot)
        status = raw.status_code
        error = error_for_response(status, raw.headers, raw.content, endpoint=endpoint)
        if error is None:
            response = Response(status, CaseInsensitiveDict(raw.headers), _parse_json(raw), attempt)
            return _Tried(response, status, None, True, started, clock)
        # A 429 was refused before Klaviyo processed anything.
        return _Tried(None, status, error, status != 429, started, clock)

    def get(self, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None) -> Response:
        return self.request("GET", path, endpoint=endpoint, params=params)

    def post(
        self, path: str, body: Any, *, endpoint: str, idempotent: bool = True, encoded: bytes | None = None
    ) -> Response:
        return self.request("POST", path, endpoint=endpoint, json=body, encoded=encoded, idempotent=idempotent)

    def paginate(
        self, path: str, *, endpoint: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Each page document of a cursor-paged GET, following ``links.next`` until there is none."""
        next_url: str | None = path
        next_params = params
        while next_url:
            page = self.get(next_url, endpoint=endpoint, params=next_params).json or {}
            yield page
            next_url = (page.get("links") or {}).get("next")
            # ``links.next`` already carries every query parameter, cursor included.
            next_params = None

    # ------------------------------------------------------------------------------------- helpers

    def _url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            # Only ever follow links back to the same origin: the key must not go anywhere else.
            if _origin(path) != self._origin:
                raise ValueError(f"refusing to send the Klaviyo key to another origin: {_origin(path)}")
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; never shorter than Klaviyo's Retry-After."""
        ceiling = self.retries.wait(attempt)
        delay = self._random.uniform(0, ceiling)
        if retry_after is not None:
            # A little jitter on top, so clients told the same Retry-After do not return together.
            delay = retry_after + self._random.uniform(0, min(ceiling, self.retries.first_wait))
        return delay

    def _record(
        self,
        method: str,
        url: str,
        endpoint: str,
        attempt: int,
        status: int | None,
        error: KlaviyoError | None,
        backoff: float | None,
        started: float,
        clock: float,
    ) -> None:
        self.stats.record(endpoint, status, retry=attempt > 1)
        if self.on_request is None:
            return
        record = RequestRecord(
            method=method,
            path=urlsplit(url).path,
            endpoint=endpoint,
            attempt=attempt,
            status=status,
            error=None if error is None else type(error).__name__,
            detail=None if error is None else error.message,
            retry_after=None if error is None else error.retry_after,
            backoff=backoff,
            elapsed=time.perf_counter() - clock,
            started_at=started,
        )
        self.on_request(record)


#: Failures of the transport itself (timeouts, refused or reset connections, a body cut short).
#: Other requests exceptions (a malformed URL, say) are bugs and propagate as they are.
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _parse_json(raw: requests.Response) -> Any:
    if not raw.content:
        return None
    try:
        return raw.json()
    except ValueError:
        return None


def _never_reached_server(exc: BaseException) -> bool:
    """True when the failure happened before the request could be sent (connect refused/timed out)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        cause: BaseException | None = exc
        for _ in range(10):  # bounded: a malformed exception chain cannot loop us forever
            if cause is None:
                break
            if isinstance(cause, urllib3.exceptions.MaxRetryError):
                cause = cause.reason
                continue
            if isinstance(cause, urllib3.exceptions.NewConnectionError):
                return True
            cause = cause.__cause__ or (cause.args[0] if cause.args and isinstance(cause.args[0], BaseException) else None)
    return False


def _one_line(text: str) -> str:
    # requests/urllib3 messages name host, port and path (never headers); keep them short.
    return " ".join(text.split())[:500]


__all__ = [
    "KlaviyoClient",
    "Response",
    "body_text",
    "copy_json",
    "encode_body",
]
