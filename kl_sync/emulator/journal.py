"""The request journal: every request received, one JSON object per line of ``data_dir/journal.jsonl``.

Each line: ``ts`` (epoch seconds when received), ``method``, ``path``, ``query``, ``headers`` (the
Authorization value redacted to ``Klaviyo-API-Key ***``: the key itself is never written), ``body``
(parsed JSON, or null), ``status`` (null when the connection was dropped), and ``fault`` when one
was injected. A line is written before the answer leaves, so a client that has its answer can read
its line.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

#: Bodies larger than this are journaled as null (with their size): no endpoint accepts them.
MAX_JOURNALED_BODY = 5_000_000

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def redact_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1")
        if name == "authorization":
            value = "Klaviyo-API-Key ***" if value.strip().lower().startswith("klaviyo-api-key") else "***"
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def parse_query(query_string: bytes) -> dict[str, str | list[str]]:
    parsed = parse_qs(query_string.decode("latin-1"), keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in parsed.items()}


class Journal:
    """Append-only JSON lines, safe to write from any thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._file = self.path.open("a", encoding="utf-8")

    def append(self, record: dict[str, Any], body_json: str | None = None) -> None:
        """Write one line. ``body_json``, when given, is the body as JSON text already known to be
        valid; it is spliced in as the ``body`` field instead of being serialized again (a
        1,000-event body costs ~15 ms to re-serialize, ~1 ms to splice)."""
        line = json.dumps(record, separators=(",", ":"), ensure_ascii=False, default=str)
        if body_json is not None:
            line = f'{line[:-1]},"body":{body_json}}}'
        line += "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()

    def read(self) -> list[dict[str, Any]]:
        with self._lock:
            self._file.flush()
            text = self.path.read_text(encoding="utf-8")
        # Lines end at "\n" only: str.splitlines() would also cut at U+2028 / U+2029, which a body's
        # strings may hold as they are (JSON allows them unescaped; a browser's JSON.stringify sends them so).
        return [json.loads(line) for line in text.split("\n") if line.strip()]

    def close(self) -> None:
        with self._lock:
            self._file.close()


class _Unparsed:
    pass


UNPARSED = _Unparsed()


class RequestContext:
    """Per-request state the journal shares with the app (``scope["kl_sync"]``): the raw body,
    the parsed body once someone parsed it, the injected fault, and :meth:`finish`."""

    def __init__(self, journal: Journal, record: dict[str, Any], raw_body: bytes):
        self._journal = journal
        self._record = record
        self.raw_body = raw_body
        self.body: Any = UNPARSED
        self.fault: str | None = None
        self._finished = False

    def finish(self, status: int | None) -> None:
        """Write the journal line (once)."""
        if self._finished:
            return
        self._finished = True
        record = self._record
        record["status"] = status
        if self.fault is not None:
            record["fault"] = self.fault
        if len(self.raw_body) > MAX_JOURNALED_BODY:
            record["body_bytes"] = len(self.raw_body)
        elif self.raw_body and self._is_json():
            # Valid JSON has raw line breaks only between tokens, so this keeps it one line.
            text = self.raw_body.decode("utf-8-sig").replace("\r", " ").replace("\n", " ")
            self._journal.append(record, body_json=text)
            return
        record["body"] = None
        self._journal.append(record)

    def _is_json(self) -> bool:
        if self.body is not UNPARSED:
            return True  # the app parsed it
        try:
            self.raw_body.decode("utf-8-sig")
            json.loads(self.raw_body)
        except (ValueError, RecursionError):
            return False
        return True


def context_of(scope: Scope) -> RequestContext:
    return scope["kl_sync"]


class JournalMiddleware:
    """Outermost ASGI layer: reads the whole body once, journals the request, and treats
    ``/api/events/`` as ``/api/events`` (Klaviyo answers both)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], journal: Journal):
        self.app = app
        self.journal = journal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = time.time()
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left before sending its request: nothing was received
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        record = {
            "ts": received,
            "method": scope["method"],
            "path": scope["path"],
            "query": parse_query(scope.get("query_string", b"")),
            "headers": redact_headers(scope.get("headers", [])),
        }
        context = RequestContext(self.journal, record, raw)
        scope["kl_sync"] = context
        if len(scope["path"]) > 1 and scope["path"].endswith("/"):
            scope["path"] = scope["path"].rstrip("/")
            scope["raw_path"] = scope["path"].encode("latin-1")

        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        async def journal_then_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                context.finish(message["status"])
            await send(message)

        try:
            await self.app(scope, replay, journal_then_send)
        except Exception:
            context.finish(500)  # the server's own error answer follows
            raise
        finally:
            context.finish(None)
