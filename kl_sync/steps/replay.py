"""Replay dead letters: rebuild each letter's key from the store's CURRENT data, check it as the
steps and the sender would, and queue it.

A letter from any step can be replayed: its key names the store row it was built from (its unit,
:func:`~kl_sync.state.dead_letters.unit_of`), and that row is read again, now:

- ``log:<id>``: the log row and its customer, built by the parse step's own builder;
- ``order:<id>`` (the order could not be built): the orders step's own way, lifecycle included;
  ``order:<id>:placed`` / ``:item:<line>``: the order's Placed Order and every line (an order is one
  unit), ``order:<id>:cancelled`` / ``:fulfilled`` that event, if the order still has that status;
- ``profile:<id>`` and ``profile:<id>:<updated_at>``: the customers step's own build of the customer's
  CURRENT row (a row fixed since has a new ``updated_at``, so a new key, which settles the letter);
  its ``…:suppress:<email>`` / ``…:unsuppress:<email>``, and ``suppress:<email>``: the same request,
  if the customer's current row still calls for it.

What is rebuilt goes through the same checks as a step's rows (a poison value is a reason, never a
crash) and the kind's data-quality suite. Per key:

- **queued**: every row it rebuilt is in the queue (a dead outbox row revived with the new payload,
  or a new row); its letters are ``replayed`` and resolve when the key is delivered;
- **still failing**: the rebuilt row fails (the new reason); its letters stay open;
- **delivered already**: the outbox holds the key verified; its letters are resolved now;
- **waiting**: what it rebuilt is queued or sent already (never sent twice); its letters resolve
  when it is delivered;
- **not found**: no unsettled letter has that key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, Row, func

from kl_sync.chunks import IN_LIST_SIZE, chunks
from kl_sync.kinds import metric_names
from kl_sync.normalize import normalize_email
from kl_sync.payloads import CANCELLED_ORDER, FULFILLED_ORDER, PLACED_ORDER
from kl_sync.state.dead_letters import Selection, mark_replayed, rebuilds, resolve_letters, select_letters
from kl_sync.state.delivery import DEAD, VERIFIED, outbox_statuses, revive_rebuilt
from kl_sync.state.outbox import OutboxItem, enqueue
from kl_sync.state.touched import touch_customers
from kl_sync.steps.common import PROFILE_COLUMNS, BadRow
from kl_sync.steps.customers import CUSTOMERS
from kl_sync.steps.orders import FINAL_EVENTS, ORDERS, build_order_events
from kl_sync.steps.parse import PARSE
from kl_sync.steps.send import quality_validator
from kl_sync.steps.stream import Built, StepContext, StreamStep, _build
from kl_sync.steps.suppress import SUPPRESS, build_suppression, should_suppress
from kl_sync.store.contract import customers, orders, system_log
from kl_sync.store.readers import STREAMS, customers_by_id, order_items_by_order, read_after

if TYPE_CHECKING:
    from kl_sync.settings import Settings

QUEUED, DELIVERED, WAITING, FAILING, NOT_FOUND = "queued", "delivered already", "waiting", "still failing", "not found"


@dataclass(frozen=True)
class Replayed:
    """What replaying one key came to."""

    key: str
    outcome: str
    #: Why it is still failing (or what it waits for).
    reason: str | None = None

    def line(self) -> str:
        return self.outcome if self.reason is None else f"{self.outcome}: {self.reason}"


@dataclass
class _Job:
    """One letter key being replayed: what its row rebuilds to, or why it cannot."""

    key: str
    reason: str | None = None
    items: list[OutboxItem] = field(default_factory=list)
    #: The step whose state the rebuild writes (orders' lifecycle, customers' e-mails), and those rows.
    step: StreamStep | None = None
    records: list[Any] = field(default_factory=list)
    touched: list[int] = field(default_factory=list)

    def fail(self, reason: str) -> None:
        self.reason = reason


# ------------------------------------------------------------------------------------ the store


def _rows(store: Engine, stream: str, column: Any, values: Sequence[Any], key: Callable[[Row[Any]], Any]
          ) -> dict[Any, list[Row[Any]]]:
    """The store rows of ``stream`` whose ``column`` is one of ``values``, read as the step reads
    them (its stream), by ``key(row)``."""
    found: dict[Any, list[Row[Any]]] = {}
    for chunk in chunks(sorted(set(values)), IN_LIST_SIZE):
        for rows in read_after(store, STREAMS[stream], None, chunk_size=IN_LIST_SIZE, where=column.in_(chunk)):
            for row in rows:
                found.setdefault(key(row), []).append(row)
    return found


def _number(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _take(job: _Job, step: StreamStep, rows: list[Row[Any]], build: Callable[[Row[Any]], Built]) -> None:
    """Build ``rows`` for ``job`` with ``build``, through the stream's own checks (a poison value, a
    payload that cannot be queued, a :class:`BadRow`: the reason)."""
    out = _build(step, rows, build)
    if out.letters:
        job.fail(out.letters[0]["reason"])
        return
    job.items += out.items
    job.step = step
    job.records += out.records
    job.touched += out.touched


# ------------------------------------------------------------------------------------ rebuilders


def _source_rows(context: StepContext, jobs: list[_Job], stream: str, table: Any, what: str
                 ) -> dict[str, Row[Any]]:
    """Each job's store row, by the id its key names (``<prefix>:<id>…``); a job whose row is not
    there fails, saying so."""
    ids = {job.key: _number(job.key.split(":")[1]) for job in jobs}
    rows = _rows(context.store, stream, table.c.id, [i for i in ids.values() if i is not None], lambda row: row.id)
    found: dict[str, Row[Any]] = {}
    for job in jobs:
        if ids[job.key] is None:
            job.fail(f"{job.key} names no {what}")
        elif ids[job.key] not in rows:
            job.fail(f"{what} {ids[job.key]} is not in the store (deleted?)")
        else:
            found[job.key] = rows[ids[job.key]][0]
    return found


def _rebuild_logs(context: StepContext, jobs: list[_Job]) -> None:
    rows = _source_rows(context, jobs, "system_log", system_log, "log")
    tracked = context.settings.log_metrics
    build = PARSE.prepare(context, [row for row in rows.values() if row.type in tracked])
    for job in jobs:
        row = rows.get(job.key)
        if row is None:
            continue
        if row.type not in tracked:
            job.fail(f"log {row.id}: its type {row.type!r} is not tracked (KL_SYNC_LOG_METRICS)")
        else:
            _take(job, PARSE, [row], build)


#: An order key's third part -> the event it is, and the store status that event needs.
_ORDER_EVENTS = {"placed": (PLACED_ORDER, None), "item": (PLACED_ORDER, None),
                 **{suffix: (metric, status) for status, (metric, suffix) in FINAL_EVENTS.items()}}


def _rebuild_orders(context: StepContext, jobs: list[_Job]) -> None:
    rows = _source_rows(context, jobs, "orders", orders, "order")
    whole = {job.key for job in jobs if job.key.count(":") == 1}
    # An order that could not be built at all: the orders step's own way, its lifecycle recorded.
    build_whole = ORDERS.prepare(context, [row for key, row in rows.items() if key in whole])
    found = [row for key, row in rows.items() if key not in whole]
    lines = order_items_by_order(context.store, sorted({row.id for row in found}))
    buyers = customers_by_id(context.store, (row.customer_id for row in found), PROFILE_COLUMNS)
    settings = context.settings
    for job in jobs:
        row = rows.get(job.key)
        if row is None:
            continue
        if job.key in whole:
            _take(job, ORDERS, [row], build_whole)
            if job.reason is None and not job.items:
                job.fail(f"order {row.id}: no event is due for it (its events are queued already)")
            continue
        metric, status = _ORDER_EVENTS.get(job.key.split(":")[2], (None, None))
        if metric is None:
            job.fail(f"{job.key} names no order event")
            continue
        if status is not None and row.status != status:
            job.fail(f"order {row.id} is {row.status!r} in the store now, not {status!r}")
            continue

        def build(order: Row[Any], metric: str = metric) -> Built:
            built = build_order_events(order, lines[order.id], buyers.get(order.customer_id), metrics=[metric],
                                       tz=settings.tz, now=context.now, backfill_after=settings.backfill_after,
                                       currency=settings.value_currency)
            return Built([OutboxItem(key, kind, payload) for key, kind, payload in built], (order.customer_id,))

        _take(job, ORDERS, [row], build)


def _rebuild_customers(context: StepContext, jobs: list[_Job]) -> None:
    rows = _source_rows(context, jobs, "customers", customers, "customer")
    consent = {job.key for job in jobs if _consent_action(job.key)}
    build = CUSTOMERS.prepare(context, [row for key, row in rows.items() if key not in consent])
    for job in jobs:
        row = rows.get(job.key)
        if row is None:
            continue
        if job.key in consent:
            _rebuild_consent(job, row)
        else:
            # The customer's CURRENT row, as the customers step builds it (a new updated_at is a new key).
            _take(job, CUSTOMERS, [row], build)


def _consent_action(key: str) -> tuple[str, str] | None:
    """``(action, e-mail)`` of a customer's consent key ``profile:<id>:<stamp>:<action>:<email>``."""
    for action in ("suppress", "unsuppress"):
        head, marker, email = key.rpartition(f":{action}:")
        if marker and head.startswith("profile:"):
            return action, email
    return None


def _rebuild_consent(job: _Job, customer: Row[Any]) -> None:
    """A suppression or unsuppression is the same request whenever it is made: rebuilt only if the
    customer's current row still calls for it."""
    action, email = _consent_action(job.key)  # type: ignore[misc]
    wanted = should_suppress(customer)
    if (action == "suppress") != wanted:
        job.fail(f"customer {customer.id} is no longer to be {action}ed (status {customer.status!r}, "
                 f"e-mail {'not ' if not customer.email_subscribed else ''}subscribed)")
        return
    kind = "suppression" if action == "suppress" else "unsuppression"
    job.items.append(OutboxItem(job.key, kind, {"email": email, "customer_id": customer.id}))


def _rebuild_suppressions(context: StepContext, jobs: list[_Job]) -> None:
    emails = {job.key: job.key.partition(":")[2] for job in jobs}
    rows = _rows(context.store, "customers", func.lower(func.trim(customers.c.email)), list(emails.values()),
                 lambda row: normalize_email(row.email))
    for job in jobs:
        holders = rows.get(emails[job.key], [])
        payloads = [build_suppression(row) for row in holders]
        if not holders:
            job.fail(f"no customer in the store has the e-mail {emails[job.key]!r}")
        elif not any(payloads):
            job.fail(f"no customer with the e-mail {emails[job.key]!r} is to be suppressed any more")
        else:
            job.items.append(OutboxItem(job.key, SUPPRESS.kinds[0], next(p for p in payloads if p)))


_REBUILDERS: dict[str, Callable[[StepContext, list[_Job]], None]] = {
    PARSE.key_prefix: _rebuild_logs,
    ORDERS.key_prefix: _rebuild_orders,
    CUSTOMERS.key_prefix: _rebuild_customers,
    SUPPRESS.key_prefix: _rebuild_suppressions,
}


# ------------------------------------------------------------------------------------ checking


def _check(jobs: list[_Job], settings: Settings) -> None:
    """Each rebuilt row against its kind's suite, every job's rows of a kind in one validation; a job
    with a failing row fails whole (an order's events go together)."""
    validate = quality_validator(metric_names(settings))
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for job in jobs:
        if job.reason is None:
            for item in job.items:
                by_kind.setdefault(item.kind, {})[item.key] = item.decoded()
    failures: dict[str, list[str]] = {}
    for kind, rows in by_kind.items():
        failures.update(validate(kind, list(rows.items())).failures)
    for job in jobs:
        failed = [item.key for item in job.items if item.key in failures]
        if job.reason is None and failed:
            where = "" if failed == [job.key] else f"{failed[0]}: "
            job.fail(where + "failed data-quality expectations: " + "; ".join(failures[failed[0]]))


# ------------------------------------------------------------------------------------ replay


def _record(conn: Any, job: _Job) -> None:
    """What the step writes beside a rebuilt row: its own state (an order's lifecycle, a customer's
    e-mails) and the customers to check for suppression."""
    if job.step is not None and job.step.record is not None and job.records:
        job.step.record(conn, job.records)
    touch_customers(conn, job.touched)


def _queued_line(job: _Job, queued: set[str]) -> str | None:
    keys = [item.key for item in job.items if item.key in queued]
    if keys == [job.key]:
        return None
    shown = ", ".join(keys[:5]) + (" …" if len(keys) > 5 else "")
    return f"{len(keys)} row{'s' if len(keys) != 1 else ''} rebuilt from the store ({shown})"


def replay_letters(
    state: Engine,
    selection: Selection,
    *,
    store: Engine,
    settings: Settings,
    run_id: str | None = None,
    now: dt.datetime | None = None,
) -> list[Replayed]:
    """Replay the unsettled letters of ``selection`` from the store's current data; one outcome per
    key (a named key without a letter is ``not found``), in the order the keys were named, else the
    letters' order. What is queued commits in one transaction with the letters' new status."""
    with state.connect() as conn:
        letters = select_letters(conn, selection)
    by_key: dict[str, list[int]] = {}
    for letter in letters:
        by_key.setdefault(letter["key"], []).append(letter["id"])
    order = list(dict.fromkeys(selection.keys)) if selection.keys else list(by_key)
    outcomes: dict[str, Replayed] = {key: Replayed(key, NOT_FOUND, "no open dead letter has this key")
                                     for key in order if key not in by_key}
    for keys in chunks([key for key in order if key in by_key], IN_LIST_SIZE):
        outcomes.update(_replay_chunk(state, store, settings, keys, by_key, run_id=run_id, now=now))
    return [outcomes[key] for key in order]


def _replay_chunk(state: Engine, store: Engine, settings: Settings, keys: list[str], letters: dict[str, list[int]],
                  *, run_id: str | None, now: dt.datetime | None) -> dict[str, Replayed]:
    context = StepContext(store, state, settings, now or dt.datetime.now(dt.UTC))
    jobs = [_Job(key) for key in keys]
    by_prefix: dict[str, list[_Job]] = {}
    for job in jobs:
        by_prefix.setdefault(job.key.partition(":")[0], []).append(job)
    for prefix, family in by_prefix.items():
        rebuild = _REBUILDERS.get(prefix)
        if rebuild is None:
            for job in family:
                job.fail(f"no step writes keys like {job.key!r}: nothing can rebuild it")
        else:
            rebuild(context, family)
    _check(jobs, settings)
    outcomes: dict[str, Replayed] = {}
    with state.begin() as conn:
        statuses = outbox_statuses(conn, [k for job in jobs for k in (job.key, *(i.key for i in job.items))])
        queued: set[str] = set()
        for job in jobs:
            if job.reason is not None:
                if statuses.get(job.key) == VERIFIED:
                    resolve_letters(conn, letters[job.key], run_id=run_id)
                    outcomes[job.key] = Replayed(job.key, DELIVERED, "Klaviyo holds it (verified): letter resolved")
                else:
                    outcomes[job.key] = Replayed(job.key, FAILING, job.reason)
                continue
            fresh = [item for item in job.items if item.key not in statuses and item.key not in queued]
            dead = [item for item in job.items if statuses.get(item.key) == DEAD and item.key not in queued]
            queued.update(enqueue(conn, fresh, run_id=run_id))
            queued.update(revive_rebuilt(conn, dead, run_id=run_id))
            _record(conn, job)
            rebuilt = [item.key for item in job.items if rebuilds(job.key, item.key)]
            if any(key in queued for key in rebuilt):
                mark_replayed(conn, [job.key, *(item.key for item in job.items if item.key in queued)], run_id=run_id)
                outcomes[job.key] = Replayed(job.key, QUEUED, _queued_line(job, queued))
            elif statuses.get(job.key) == VERIFIED:
                resolve_letters(conn, letters[job.key], run_id=run_id)
                outcomes[job.key] = Replayed(job.key, DELIVERED, "Klaviyo holds it (verified): letter resolved")
            elif any(statuses.get(key) is not None for key in rebuilt):
                waiting = next(key for key in rebuilt if statuses.get(key) is not None)
                outcomes[job.key] = Replayed(job.key, WAITING, f"{waiting} is {statuses[waiting]} already (never "
                                                               "sent twice); the letter resolves when it is delivered")
            else:
                outcomes[job.key] = Replayed(job.key, FAILING, "its row rebuilds to nothing to send")
    return outcomes
