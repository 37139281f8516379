"""What is read back from the account: keyset pages for the API's collections, rows by id, and
whole-account snapshots for tests, the demo and benchmarks.

:class:`Reads` is the read half of :class:`~kl_sync.emulator.storage.store.Store`; every query runs
under the store's lock. A new collection is one ``page_*`` method here over :meth:`Reads._page`.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from kl_sync.emulator.errors import fail
from kl_sync.emulator.storage.schema import IDENTIFIER_KINDS
from kl_sync.emulator.storage.values import identifier_key, iso_from_epoch, placeholders


@dataclass(frozen=True)
class Condition:
    """One filter term, values already normalized (epoch seconds for event times, ISO strings for
    profile/list times, lists for ``any``)."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


_COMPARE = {
    "equals": "=",
    "greater-than": ">",
    "greater-or-equal": ">=",
    "less-than": "<",
    "less-or-equal": "<=",
}


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> list[Any]:
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except ValueError:
        raise ValueError("not a cursor this server issued") from None
    if not isinstance(key, list) or len(key) != 2 or not isinstance(key[1], int):
        raise ValueError("not a cursor this server issued")
    return key


def _values(condition: Condition) -> list[Any]:
    return condition.value if condition.op == "any" else [condition.value]


#: One SQL condition and its parameters.
Term = tuple[str, list[Any]]


def _among(column: str, values: list[Any]) -> Term:
    return f"{column} IN ({placeholders(len(values))})", list(values)


def _compared(column: str, condition: Condition) -> Term:
    return f"{column} {_COMPARE[condition.op]} ?", [condition.value]


def _event_term(c: Condition) -> Term:
    if c.field in ("metric_id", "profile_id"):
        return f"e.{c.field} = ?", [c.value]
    return _compared("e.time", c)  # datetime / timestamp, as epoch seconds


#: A profile's global e-mail suppression (the emulator keeps one per e-mail: :mod:`.schema`).
_SUPPRESSION = "subscriptions.email.marketing.suppression."
_SUPPRESSION_TIME = "(SELECT s.time FROM suppressions s WHERE s.profile_id = p.id)"


def _profile_term(c: Condition) -> Term:
    if c.field.startswith(_SUPPRESSION):
        # get_profiles allows filtering on the suppression's reason (equals) and timestamp (compared).
        column = "s.reason" if c.field.endswith(".reason") else "s.time"
        sql, params = _compared(column, c)
        return f"p.id IN (SELECT s.profile_id FROM suppressions s WHERE {sql})", params
    if c.field == "id":
        return _among("p.id", _values(c))
    if c.field in IDENTIFIER_KINDS:
        keys = [identifier_key(c.field, str(v)) for v in _values(c)]
        sql, params = _among("value", keys)
        return f"p.id IN (SELECT profile_id FROM profile_identifiers WHERE kind = ? AND {sql})", [c.field, *params]
    return _compared(f"p.{c.field}", c)  # created / updated


def _list_term(c: Condition) -> Term:
    if c.field in ("id", "name"):
        return _among(f"l.{c.field}", _values(c))
    return _compared(f"l.{c.field}", c)


class Reads:
    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock):
        self._conn = conn
        self._lock = lock

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self._conn.execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _by_id(self, select: str, key: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``select ... WHERE key IN ids``, keyed by ``key``."""
        if not ids:
            return {}
        sql, params = _among(key, list(ids))
        return {r[key]: r for r in self._query(f"{select} WHERE {sql}", params)}

    # pages for the API ---------------------------------------------------------------------------

    def _page(
        self,
        source: str,
        columns: str,
        sort_expr: str,
        sort: str | None,
        terms: list[Term],
        after: list[Any] | None,
        size: int,
    ) -> Page:
        """Keyset paging on (sort value, seq) over ``source`` (``"profiles p"``) where every term
        holds: stable while rows are added. ``sort`` is the query's (``-`` first: descending);
        ``after`` the key of the previous page's last row (a decoded cursor)."""
        seq_expr = f"{source.split()[1]}.seq"
        descending = bool(sort and sort.startswith("-"))
        where = [sql for sql, _ in terms]
        params = [value for _, values in terms for value in values]
        if after is not None:
            value, seq = after
            op = "<" if descending else ">"
            where.append(f"({sort_expr} {op} ? OR ({sort_expr} = ? AND {seq_expr} {op} ?))")
            params += [value, value, seq]
        direction = "DESC" if descending else "ASC"
        sql = f"SELECT {seq_expr} AS _seq, {sort_expr} AS _sort, {columns} FROM {source}"
        sql += (" WHERE " + " AND ".join(where) if where else "")
        sql += f" ORDER BY {sort_expr} {direction}, {seq_expr} {direction} LIMIT ?"
        rows = self._query(sql, [*params, size + 1])
        more = len(rows) > size
        rows = rows[:size]
        next_cursor = encode_cursor([rows[-1]["_sort"], rows[-1]["_seq"]]) if more else None
        return Page(rows, next_cursor)

    def page_events(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        columns = (
            "e.id, e.uuid, e.metric_id, e.profile_id, e.unique_id, e.dedupe_key, e.time, e.value, "
            "e.value_currency, e.properties"
        )
        # Only processed events can be read back (kl_sync.emulator.processing).
        terms = [*(_event_term(c) for c in conditions), ("e.processed_at <= ?", [time.time()])]
        return self._page("events e", columns, "e.time", sort, terms, after, size)

    def page_profiles(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        sort_expr = {
            "id": "p.id",
            "created": "p.created",
            "updated": "p.updated",
            "email": "COALESCE(json_extract(p.attributes, '$.email'), '')",
            # A sort the spec allows; profiles without a suppression sort first, as '' does.
            _SUPPRESSION + "timestamp": f"COALESCE({_SUPPRESSION_TIME}, '')",
        }.get((sort or "").lstrip("-"), "p.seq")
        columns = "p.id, p.attributes, p.properties, p.created, p.updated, p.last_event_date"
        terms = [_profile_term(c) for c in conditions]
        return self._page("profiles p", columns, sort_expr, sort, terms, after, size)

    def page_lists(
        self, conditions: Sequence[Condition], sort: str | None, after: list[Any] | None, size: int
    ) -> Page:
        field_name = (sort or "").lstrip("-")
        sort_expr = f"l.{field_name}" if field_name in ("id", "name", "created", "updated") else "l.seq"
        columns = "l.id, l.name, l.opt_in_process, l.created, l.updated"
        terms = [_list_term(c) for c in conditions]
        return self._page("lists l", columns, sort_expr, sort, terms, after, size)

    def page_import_errors(self, job_id: str, after: list[Any] | None, size: int) -> Page:
        columns = "i.id, i.code, i.title, i.detail, i.pointer, i.original_payload"
        return self._page("import_errors i", columns, "i.seq", None, [("i.job_id = ?", [job_id])], after, size)

    def page_metrics(self, after: list[Any] | None, size: int) -> Page:
        return self._page("metrics m", "m.id, m.name, m.created, m.updated", "m.seq", None, [], after, size)

    # rows by id ----------------------------------------------------------------------------------

    def metrics_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self._by_id("SELECT id, name, created, updated FROM metrics", "id", ids)

    def profiles_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        select = "SELECT id, attributes, properties, created, updated, last_event_date FROM profiles"
        return self._by_id(select, "id", ids)

    def lists_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return self._by_id("SELECT id, name, opt_in_process, created, updated FROM lists", "id", ids)

    def suppressions_by_email(self, emails: Sequence[str]) -> dict[str, dict[str, Any]]:
        keys = [identifier_key("email", e) for e in emails if e]
        return self._by_id("SELECT email_key, reason, time FROM suppressions", "email_key", keys)

    def job(self, kind: str, job_id: str) -> dict[str, Any]:
        """A bulk job of ``kind`` (``"profile-bulk-import-job"``); an unknown id is a 404."""
        rows = self._query("SELECT * FROM jobs WHERE type = ? AND id = ?", (kind, job_id))
        if not rows:
            raise fail(404, "not_found", f"No {kind} with id {job_id!r}.")
        return rows[0]

    # whole-account snapshots (for tests, the demo and benchmarks) --------------------------------

    def events(self, *, accepted: bool = False) -> list[dict[str, Any]]:
        """What Klaviyo shows (processed events), oldest write first; with ``accepted``, every event
        a 202 accepted: processed (``status`` "shown"), still processing ("processing") and lost
        ("lost", listed after the others)."""
        shown = "e.processed_at <= ?"
        rows = self._query(
            "SELECT e.id, m.name AS metric, json_extract(p.attributes, '$.email') AS profile_email, e.profile_id, "
            "e.unique_id, e.time, e.value, e.value_currency, e.backfill, e.properties, e.source, "
            f"CASE WHEN {shown} THEN 'shown' ELSE 'processing' END AS status "
            "FROM events e JOIN metrics m ON m.id = e.metric_id JOIN profiles p ON p.id = e.profile_id "
            + ("" if accepted else f"WHERE {shown} ")
            + "ORDER BY e.seq",
            [time.time()] * (1 if accepted else 2),
        )
        if accepted:
            rows += self._query(
                "SELECT NULL AS id, m.name AS metric, json_extract(p.attributes, '$.email') AS profile_email, "
                "l.profile_id, l.unique_id, l.time, NULL AS value, NULL AS value_currency, 0 AS backfill, "
                "l.properties, l.source, 'lost' AS status "
                "FROM lost_events l JOIN metrics m ON m.id = l.metric_id JOIN profiles p ON p.id = l.profile_id "
                "ORDER BY l.seq"
            )
        for row in rows:
            row["time"] = iso_from_epoch(row["time"])
            row["backfill"] = bool(row["backfill"])
            row["properties"] = json.loads(row["properties"])
        return rows

    def profiles(self) -> list[dict[str, Any]]:
        out = []
        for row in self._query("SELECT id, attributes, properties, created, updated FROM profiles ORDER BY seq"):
            attributes = json.loads(row["attributes"])
            out.append(
                {
                    "id": row["id"],
                    "email": attributes.get("email"),
                    "phone_number": attributes.get("phone_number"),
                    "external_id": attributes.get("external_id"),
                    "first_name": attributes.get("first_name"),
                    "last_name": attributes.get("last_name"),
                    "properties": json.loads(row["properties"]),
                    "created": row["created"],
                    "updated": row["updated"],
                }
            )
        return out

    def suppressions(self) -> list[dict[str, Any]]:
        return self._query("SELECT email, time, reason, profile_id FROM suppressions ORDER BY rowid")

    def lists(self) -> list[dict[str, Any]]:
        lists = self._query("SELECT id, name, created FROM lists ORDER BY seq")
        members = self._query(
            "SELECT m.list_id, json_extract(p.attributes, '$.email') AS email FROM list_members m "
            "JOIN profiles p ON p.id = m.profile_id ORDER BY m.rowid"
        )
        for item in lists:
            item["profile_emails"] = [m["email"] for m in members if m["list_id"] == item["id"]]
        return lists
