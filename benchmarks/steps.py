"""Benchmarks 2 and 3: the parse and orders steps against a raw INSERT … SELECT of the same rows.

The baseline is the database doing the same job with no Python in the loop: one statement per kind
of outbox row, reading the store and writing JSON payloads of the same content into a fresh state
database's ``outbox`` (the same table, indexes and unique key the step writes). SQLite attaches the
store to the state database; PostgreSQL keeps store and state in two schemas of one database so one
statement can read one and write the other.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, text

from benchmarks.harness import BenchResult, Figure, fresh_dir, median, sqlite_url, timed
from benchmarks.stores import fill_store
from kl_sync.db import backend, make_engine
from kl_sync.settings import DEFAULT_LOG_METRICS, Settings, load_settings
from kl_sync.state.migrate import open_state
from kl_sync.steps.orders import process_orders
from kl_sync.steps.parse import parse_log

_TRACKED = ", ".join(f"'{t}'" for t in sorted(DEFAULT_LOG_METRICS))
POSTGRES_ENV = ("KL_SYNC_BENCH_POSTGRES_URL", "KL_SYNC_TEST_POSTGRES_URL")


# ----------------------------------------------------------------------------- the raw statements


def _sqlite_json(kind: str) -> dict[str, str]:
    """SQL fragments building a payload (same keys and values as the steps') on one backend."""
    if kind == "sqlite":
        return {"obj": "json_object", "raw": "json", "true": "json('true')", "bool": "json(CASE WHEN {} THEN 'true' ELSE 'false' END)",
                "merge": "json_patch({}, {})", "arr": "json_array", "cat": "||"}
    return {"obj": "jsonb_build_object", "raw": "({})::jsonb", "true": "true", "bool": "({})::boolean",
            "merge": "({})::jsonb || {}", "arr": "jsonb_build_array", "cat": "||"}


def _profile_sql(j: dict[str, str]) -> str:
    obj = j["obj"]
    return (f"{obj}('email', lower(trim(c.email)), 'first_name', c.first_name, 'last_name', c.last_name, "
            f"'properties', {obj}('Schedule', c.schedule, 'Status', c.status, 'Box', c.box, "
            f"'SignUpDate', c.signup_date, 'HasFilledOutProfile', {j['bool'].format('c.has_filled_out_profile')}))")


def raw_parse_sql(kind: str, store_prefix: str, now: str) -> list[str]:
    j = _sqlite_json(kind)
    obj = j["obj"]
    properties = j["merge"].format("l.data", f"{obj}('message', l.message, 'log_id', l.id, 'log_type', l.type)")
    payload = (f"{obj}('metric', l.type, 'time', l.created_at, 'unique_id', 'log:' || l.id, 'properties', {properties}, "
               f"'profile', {_profile_sql(j)}, 'backfill', {j['true']})")
    return [
        f"INSERT INTO outbox (key, kind, payload, status, attempts, next_attempt_at, created_at) "
        f"SELECT 'log:' || l.id, 'log_event', {payload}, 'pending', 0, '{now}', '{now}' "
        f"FROM {store_prefix}system_log l LEFT JOIN {store_prefix}customers c ON c.id = l.customer_id "
        f"WHERE l.type IN ({_TRACKED}) ON CONFLICT (key) DO NOTHING"
    ]


def raw_orders_sql(kind: str, store_prefix: str, now: str) -> list[str]:
    """Placed Order (with its items), Ordered Product per line, and Fulfilled / Cancelled Order."""
    j = _sqlite_json(kind)
    obj, s = j["obj"], store_prefix
    line = (f"{obj}('ProductID', i.product_id, 'ProductName', i.product_name, 'Quantity', i.quantity, "
            f"'ItemPrice', i.item_price, 'RowTotal', i.item_price * i.quantity, 'ProductURL', i.product_url, "
            f"'ImageURL', i.image_url, 'ProductCategories', i.categories)")
    agg = "json_group_array" if kind == "sqlite" else "jsonb_agg"
    items = f"(SELECT {agg}({line}) FROM {s}order_items i WHERE i.order_id = o.id)"
    names = f"(SELECT {agg}(i.product_name) FROM {s}order_items i WHERE i.order_id = o.id)"
    order_props = f"{obj}('OrderId', o.id, 'ItemNames', {names}, 'Items', {items}, 'DeliveryDate', o.delivery_date)"

    def order_payload(metric: str, key: str, when: str) -> str:
        return (f"{obj}('metric', '{metric}', 'time', {when}, 'unique_id', {key}, 'value', o.total, "
                f"'value_currency', 'USD', 'properties', {order_props}, 'profile', {_profile_sql(j)}, 'backfill', {j['true']})")

    columns = "INSERT INTO outbox (key, kind, payload, status, attempts, next_attempt_at, created_at) "
    tail = f"'pending', 0, '{now}', '{now}'"
    joins = f"FROM {s}orders o JOIN {s}customers c ON c.id = o.customer_id"
    placed_key = "'order:' || o.id || ':placed'"
    product = (f"{obj}('metric', 'Ordered Product', 'time', o.created_at, 'unique_id', k.key, 'value', "
               f"i.item_price * i.quantity, 'value_currency', 'USD', 'properties', {line}, 'profile', {_profile_sql(j)}, "
               f"'backfill', {j['true']})")
    statements = [
        f"{columns} SELECT {placed_key}, 'order_event', {order_payload('Placed Order', placed_key, 'o.created_at')}, {tail} "
        f"{joins} WHERE true ON CONFLICT (key) DO NOTHING",
        f"{columns} SELECT k.key, 'ordered_product', {product}, {tail} FROM {s}order_items i "
        f"JOIN {s}orders o ON o.id = i.order_id JOIN {s}customers c ON c.id = o.customer_id "
        f"CROSS JOIN (SELECT 1) AS one, LATERAL (SELECT 'order:' || o.id || ':item:' || i.id AS key) k WHERE true ON CONFLICT (key) DO NOTHING"
        if kind != "sqlite" else
        f"{columns} SELECT 'order:' || o.id || ':item:' || i.id, 'ordered_product', "
        f"{product.replace('k.key', chr(39) + 'order:' + chr(39) + ' || o.id || ' + chr(39) + ':item:' + chr(39) + ' || i.id')}, {tail} "
        f"FROM {s}order_items i JOIN {s}orders o ON o.id = i.order_id JOIN {s}customers c ON c.id = o.customer_id "
        f"WHERE true ON CONFLICT (key) DO NOTHING",
    ]
    for status, metric, suffix in (("Completed", "Fulfilled Order", "fulfilled"), ("Cancelled", "Cancelled Order", "cancelled")):
        key = f"'order:' || o.id || ':{suffix}'"
        statements.append(
            f"{columns} SELECT {key}, 'order_event', {order_payload(metric, key, 'o.updated_at')}, {tail} "
            f"{joins} WHERE o.status = '{status}' ON CONFLICT (key) DO NOTHING"
        )
    return statements


# ----------------------------------------------------------------------------- backends


class Backend:
    """A store and fresh state databases on one backend, and the raw statement run against them."""

    name = "sqlite"

    def __init__(self, label: str) -> None:
        self.folder = fresh_dir(label)
        self.store_url = sqlite_url(self.folder / "store.db")
        self.store = make_engine(self.store_url, sqlite_wal=False)

    def fresh_state(self) -> tuple[str, Engine]:
        for path in self.folder.glob("state.db*"):
            path.unlink()
        url = sqlite_url(self.folder / "state.db")
        return url, open_state(url)

    def run_raw(self, statements: list[str], state: Engine) -> float:
        def go() -> None:
            with state.begin() as conn:
                conn.exec_driver_sql(f"ATTACH DATABASE '{self.folder / 'store.db'}' AS st")
                for sql in statements:
                    conn.exec_driver_sql(sql)
            with state.connect() as conn:
                conn.exec_driver_sql("DETACH DATABASE st")

        return timed(go)[0]

    store_prefix = "st."

    def close(self) -> None:
        self.store.dispose()


class PostgresBackend(Backend):
    """Store in schema ``bench_store_<id>``, each state in schema ``bench_state_<id>``, one database."""

    name = "postgresql"

    def __init__(self, label: str, url: str) -> None:
        self.base_url = url
        self.token = uuid.uuid4().hex[:8]
        self.store_schema = f"bench_store_{self.token}"
        self.state_schema = f"bench_state_{self.token}"
        admin = make_engine(url)
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {self.store_schema}")
        admin.dispose()
        self.admin = make_engine(url)
        self.store_url = self._schema_url(self.store_schema)
        self.store = make_engine(self.store_url)
        self.store_prefix = f"{self.store_schema}."
        self._state: Engine | None = None

    def _schema_url(self, schema: str) -> str:
        from sqlalchemy.engine import make_url

        parsed = make_url(self.base_url)
        return parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(hide_password=False)

    def fresh_state(self) -> tuple[str, Engine]:
        if self._state is not None:
            self._state.dispose()
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.state_schema} CASCADE")
            conn.exec_driver_sql(f"CREATE SCHEMA {self.state_schema}")
        url = self._schema_url(self.state_schema)
        self._state = open_state(url)
        return url, self._state

    def run_raw(self, statements: list[str], state: Engine) -> float:
        def go() -> None:
            with state.begin() as conn:
                for sql in statements:
                    conn.exec_driver_sql(sql.replace("%", "%%"))

        return timed(go)[0]

    def close(self) -> None:
        self.store.dispose()
        if self._state is not None:
            self._state.dispose()
        with self.admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.state_schema} CASCADE")
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.store_schema} CASCADE")
        self.admin.dispose()


def postgres_url() -> str | None:
    return next((os.environ[name] for name in POSTGRES_ENV if os.environ.get(name)), None)


@contextlib.contextmanager
def backends(label: str, *, postgres: bool) -> Iterator[list[Backend]]:
    made: list[Backend] = [Backend(label)]
    url = postgres_url() if postgres else None
    try:
        if url:
            made.append(PostgresBackend(label, url))
        yield made
    finally:
        for b in made:
            b.close()


# ----------------------------------------------------------------------------- the benchmarks


def _compare(step: str, backend_: Backend, settings: Settings, run_step: Any, raw: list[str], rows: int,
             repeat: int) -> dict[str, Any]:
    step_times, raw_times, queued = [], [], []
    for _ in range(repeat):
        # Alternate step and raw so a burst of load on the shared machine hits both alike.
        url, state = backend_.fresh_state()
        elapsed, result = timed(lambda: run_step(backend_.store, state, settings.model_copy(update={"state_url": url})))
        step_times.append(elapsed)
        queued.append(result.queued)
        state.dispose()
        _, state = backend_.fresh_state()
        raw_times.append(backend_.run_raw(raw, state))
        with state.connect() as conn:
            raw_rows = conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()
        state.dispose()
    if raw_rows != queued[0]:
        raise RuntimeError(f"{step}: the raw statement queued {raw_rows} rows, the step {queued[0]}")
    return {"step_seconds": step_times, "raw_seconds": raw_times, "queued": queued[0], "rows": rows}


def _run_step(step: str, run: Any, raw_sql: Any, rows_on: Callable[[Backend], int], fill: Callable[[Backend, int], None],
              figures_of: Callable[[Backend, int, dict[str, Any], float, float], list[Figure]], *, repeat: int,
              postgres: bool) -> BenchResult:
    """One step on each backend: fill the store, time the step from the first row and the raw
    statements, and describe the medians."""
    result = BenchResult(step)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(" ")
    with backends(step, postgres=postgres) as made:
        for b in made:
            rows = rows_on(b)
            fill(b, rows)
            settings = load_settings(store_url=b.store_url)
            figures = _compare(step, b, settings, lambda store, state, s: run(store, state, s, from_start=True),
                               raw_sql(b.name, b.store_prefix, now), rows, repeat)
            result.figures += figures_of(b, rows, figures, median(figures["step_seconds"]), median(figures["raw_seconds"]))
            result.details[b.name] = figures
    return result


def run_parse(rows: int = 1_000_000, *, repeat: int = 3, postgres: bool = True, customers: int = 50_000,
              postgres_rows: int | None = None) -> BenchResult:
    def figures_of(b: Backend, n: int, found: dict[str, Any], step: float, raw: float) -> list[Figure]:
        size = f"{n:,} log rows, {b.name}"
        return [
            # Parse has to stay ahead of the sender, whose burst window takes 10 requests of 1,000
            # events a second; matching a bare INSERT … SELECT is not a goal (the raw figure stays).
            Figure("2 parse", f"rows/s ({b.name})", n / step, "rows/s", (">=", 10_000), size, repeat,
                   f"median {step:.1f} s; Klaviyo takes at most 10,000 events/s (its burst window)"),
            Figure("2 parse", f"÷ raw INSERT … SELECT ({b.name})", step / raw, "x", None, size, repeat,
                   f"raw: median {raw:.2f} s = {n / raw:,.0f} rows/s"),
        ]

    return _run_step("parse", parse_log, raw_parse_sql,
                     lambda b: (postgres_rows or rows) if b.name == "postgresql" else rows,
                     lambda b, n: fill_store(b.store, customers=customers, log_rows=n), figures_of,
                     repeat=repeat, postgres=postgres)


def run_orders(orders: int = 200_000, *, repeat: int = 3, postgres: bool = True, customers: int = 50_000,
               postgres_orders: int | None = None) -> BenchResult:
    def figures_of(b: Backend, n: int, found: dict[str, Any], step: float, raw: float) -> list[Figure]:
        size = f"{n:,} orders ({found['queued']:,} events), {b.name}"
        return [
            Figure("3 orders", f"orders/s ({b.name})", n / step, "rows/s", None, size, repeat, f"median {step:.1f} s"),
            Figure("3 orders", f"÷ raw INSERT … SELECT ({b.name})", step / raw, "x", None, size, repeat,
                   f"raw: median {raw:.2f} s"),
        ]

    return _run_step("orders", process_orders, raw_orders_sql,
                     lambda b: (postgres_orders or orders) if b.name == "postgresql" else orders,
                     lambda b, n: fill_store(b.store, customers=customers, orders=n), figures_of,
                     repeat=repeat, postgres=postgres)
