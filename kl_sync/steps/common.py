"""What the steps share: the customer's current profile, bad rows, the chunk commit, step results."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, select

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.kinds import kind_of
from kl_sync.normalize import clean_name, klaviyo_time, normalize_email
from kl_sync.payloads import ProfilePayload
from kl_sync.state.cursors import set_cursor
from kl_sync.state.dead_letters import add_dead_letters, dead_letter_keys
from kl_sync.state.outbox import enqueue
from kl_sync.state.touched import touch_customers
from kl_sync.store.contract import customers


class BadRow(ValueError):
    """A store row that cannot become a valid payload; the message is the reason a person acts on."""


def profile_properties(customer: Row[Any] | dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    """The customer's CURRENT profile properties, as the seed's identify calls set them."""
    c = customer._mapping if isinstance(customer, Row) else customer
    signup = c["signup_date"]
    return {
        "Schedule": c["schedule"],
        "Status": c["status"],
        "Box": c["box"],
        "SignUpDate": klaviyo_time(signup, tz) if signup else None,
        "HasFilledOutProfile": bool(c["has_filled_out_profile"]),
    }


def profile_of(customer: Row[Any] | dict[str, Any], tz: ZoneInfo) -> ProfilePayload:
    """The profile payload for a customer; :class:`BadRow` when they have no usable e-mail."""
    c = customer._mapping if isinstance(customer, Row) else customer
    email = normalize_email(c["email"])
    if email is None:
        raw = c["email"]
        what = "no e-mail" if raw is None or not str(raw).strip() else f"a malformed e-mail {raw!r}"
        raise BadRow(f"customer {c['id']} has {what}")
    return {
        "email": email,
        "first_name": clean_name(c["first_name"]),
        "last_name": clean_name(c["last_name"]),
        "properties": profile_properties(c, tz),
    }


class CustomerProfiles:
    """The profile payload of each customer of a chunk, built once however many of its rows name them.

    ``of`` raises :class:`BadRow` for a customer who is not in the store or has no usable e-mail.
    """

    def __init__(self, rows: dict[int, Row[Any]], tz: ZoneInfo) -> None:
        self._rows = rows
        self._tz = tz
        self._built: dict[int, ProfilePayload | BadRow] = {}

    def of(self, customer_id: int) -> ProfilePayload:
        built = self._built.get(customer_id)
        if built is None:
            customer = self._rows.get(customer_id)
            if customer is None:
                built = BadRow(f"customer {customer_id} is not in the store (deleted?)")
            else:
                try:
                    built = profile_of(customer, self._tz)
                except BadRow as exc:
                    built = exc
            self._built[customer_id] = built
        if isinstance(built, BadRow):
            raise BadRow(str(built))
        return built


#: What a profile is built from (:func:`profile_of`): steps that only build profiles read just these.
PROFILE_COLUMNS = ("id", "email", "first_name", "last_name", "schedule", "status", "box", "signup_date",
                   "has_filled_out_profile")


def load_customers(store: Engine, ids: Iterable[int | None], columns: Sequence[str] | None = None) -> dict[int, Row[Any]]:
    """The current rows of these customers (all columns, or ``columns``), in one query per 1,000 ids."""
    wanted = sorted({i for i in ids if i is not None})
    query = select(*(customers.c[name] for name in columns)) if columns else select(customers)
    found: dict[int, Row[Any]] = {}
    with store.connect() as conn:
        for chunk in chunks(wanted, IN_LIST_SIZE):
            for row in conn.execute(query.where(customers.c.id.in_(chunk))):
                found[row.id] = row
    return found


def is_backfill(event_time: dt.datetime, now: dt.datetime, backfill_after: dt.timedelta) -> bool:
    return event_time < now - backfill_after


def commit_chunk(
    state: Engine,
    result: StepResult,
    *,
    step: str,
    stream: str,
    cursor: Sequence[Any],
    items: Sequence[Any],
    letters: list[dict[str, Any]],
    touched: Iterable[int],
    run_id: str | None,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """Commit one chunk of a store-reading step in ONE transaction: its outbox rows, its dead letters,
    the customers it touched, anything ``also`` writes (order lifecycle), and the cursor past the
    chunk. A crash before the commit repeats the chunk; after it, nothing of it is redone."""
    with state.begin() as conn:
        new_keys = enqueue(conn, items, run_id=run_id)
        # A re-read (--from-start, the orders lookback) must not dead-letter the same row twice.
        known = dead_letter_keys(conn, [d["key"] for d in letters], step=step)
        letters = [d for d in letters if d["key"] not in known]
        add_dead_letters(conn, letters, run_id=run_id)
        if also is not None:
            also(conn)
        touch_customers(conn, touched)
        set_cursor(conn, stream, cursor)
    for item in items:
        if item.key in new_keys and kind_of(item.kind).metrics is not None:
            result.count_metric(item.payload["metric"])
    result.queued += len(new_keys)
    result.dead_letters += len(letters)


@dataclass
class StepResult:
    """What one step did in one run; flows publish these as artifacts, the CLI prints them."""

    step: str
    rows_read: int = 0
    queued: int = 0
    dead_letters: int = 0
    by_metric: dict[str, int] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def count_metric(self, metric: str, n: int = 1) -> None:
        self.by_metric[metric] = self.by_metric.get(metric, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rows_read": self.rows_read,
            "queued": self.queued,
            "dead_letters": self.dead_letters,
            "by_metric": dict(sorted(self.by_metric.items())),
            **self.details,
        }
