"""Process Orders: Placed Order, Ordered Product, Cancelled Order, Fulfilled Order.

Klaviyo's e-commerce metrics are recognised by its analytics (CLV, benchmarks) only when spelled
exactly so. The orders changed since the cursor (``updated_at``, ``id``) are read chunk by chunk and
matched, one query per chunk, against the lifecycle state kl-sync keeps for every order it has sent:

- an order not seen before gets **Placed Order** (value = total) and one **Ordered Product** per line
  (value = the line total); if it is already Cancelled / Completed, that event follows at once;
- an order already sent as Placed that is now ``Cancelled`` gets **Cancelled Order**, one now
  ``Completed`` (billing succeeded, not delivered) gets **Fulfilled Order**, at its ``updated_at``.

The step is a declared stream (:data:`ORDERS`, run by :mod:`kl_sync.steps.stream`): the lifecycle
rows, outbox rows, dead letters, touched customers and cursor commit in one transaction per chunk.
Every key is deterministic (``order:<id>:placed``, ``order:<id>:item:<item>``, ``order:<id>:cancelled``,
``order:<id>:fulfilled``), so a re-run never doubles an event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Row

from kl_sync.normalize import klaviyo_time, store_moment
from kl_sync.payloads import CANCELLED_ORDER, FULFILLED_ORDER, ORDERED_PRODUCT, PLACED_ORDER, EventPayload, ProfilePayload
from kl_sync.state.codec import utcnow
from kl_sync.state.delivery import dead_keys
from kl_sync.state.order_lifecycle import known_states, record_states
from kl_sync.state.outbox import OutboxItem
from kl_sync.steps.common import PROFILE_COLUMNS, BadRow, is_backfill, profile_of
from kl_sync.steps.stream import Built, RowBuilder, StepContext, StoreStream, StreamStep, lookback
from kl_sync.store.readers import customers_by_id, order_items_by_order, unreadable_problem

STREAM = "orders"
KEY_PREFIX = "order"
#: Store status -> the event that follows Placed Order.
FINAL_EVENTS = {"Cancelled": (CANCELLED_ORDER, "cancelled"), "Completed": (FULFILLED_ORDER, "fulfilled")}


def _money(value: Decimal | float | int | None) -> float:
    return float(Decimal(str(value or 0)).quantize(Decimal("0.01")))


def _categories(raw: str | None) -> list[str]:
    return [c.strip() for c in (raw or "").split(",") if c.strip()]


def _item_properties(item: Row[Any] | dict[str, Any]) -> dict[str, Any]:
    i = item._mapping if isinstance(item, Row) else item
    return {
        "ProductID": str(i["product_id"]),
        "ProductName": i["product_name"],
        "Quantity": int(i["quantity"]),
        "ItemPrice": _money(i["item_price"]),
        "RowTotal": _money(Decimal(str(i["item_price"])) * int(i["quantity"])),
        "ProductURL": i["product_url"] or "",
        "ImageURL": i["image_url"] or "",
        "ProductCategories": _categories(i["categories"]),
    }


def _order_profile(o: Any, customer: Row[Any] | dict[str, Any] | None, tz: ZoneInfo) -> ProfilePayload:
    """The profile an order's events ride with; :class:`BadRow` naming the order when there is none."""
    if o["customer_id"] is None:
        raise BadRow(f"order {o['id']} has no customer")
    if customer is None:
        raise BadRow(f"order {o['id']}: customer {o['customer_id']} is not in the store (deleted?)")
    try:
        return profile_of(customer, tz)
    except BadRow as exc:
        raise BadRow(f"order {o['id']}: {exc}") from None


def _order_properties(o: Any, lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "OrderId": str(o["id"]),
        "ItemNames": [line["ProductName"] for line in lines],
        "Categories": sorted({c for line in lines for c in line["ProductCategories"]}),
        "Items": lines,
        "DeliveryDate": o["delivery_date"].isoformat() if o["delivery_date"] else None,
    }


def build_order_events(
    order: Row[Any] | dict[str, Any],
    items: Sequence[Row[Any] | dict[str, Any]],
    customer: Row[Any] | dict[str, Any] | None,
    *,
    metrics: Sequence[str],
    tz: ZoneInfo,
    now: dt.datetime,
    backfill_after: dt.timedelta,
    currency: str,
) -> list[tuple[str, str, EventPayload]]:
    """The events for one order: ``(key, kind, payload)`` for each metric asked for. Pure.

    ``metrics`` holds any of Placed Order (which brings its Ordered Product lines), Cancelled Order,
    Fulfilled Order. Raises :class:`BadRow` when the order cannot be sent (no customer, no e-mail).
    """
    o = order._mapping if isinstance(order, Row) else order
    profile = _order_profile(o, customer, tz)
    for item in items:
        problem = unreadable_problem(item)
        if problem is not None:
            i = item._mapping if isinstance(item, Row) else item
            raise BadRow(f"order {o['id']}: line {i['id']}: {problem}")
    lines = [_item_properties(i) for i in items]
    order_properties = _order_properties(o, lines)
    total = _money(o["total"])

    def event(metric: str, key: str, when: dt.datetime, value: float, properties: dict[str, Any]) -> EventPayload:
        return {
            "metric": metric,
            "time": klaviyo_time(when, tz),
            "unique_id": key,
            "value": value,
            "value_currency": currency,
            "properties": properties,
            "profile": profile,
            "backfill": is_backfill(store_moment(when, tz), now, backfill_after),
        }

    out: list[tuple[str, str, EventPayload]] = []
    if PLACED_ORDER in metrics:
        key = f"order:{o['id']}:placed"
        out.append((key, "order_event", event(PLACED_ORDER, key, o["created_at"], total, order_properties)))
        for item, line in zip(items, lines, strict=True):
            i = item._mapping if isinstance(item, Row) else item
            key = f"order:{o['id']}:item:{i['id']}"
            out.append((key, "ordered_product", event(ORDERED_PRODUCT, key, o["created_at"], line["RowTotal"],
                                                       {"OrderId": str(o["id"]), **line})))
    for metric, suffix in FINAL_EVENTS.values():
        if metric in metrics:
            key = f"order:{o['id']}:{suffix}"
            out.append((key, "order_event", event(metric, key, o["updated_at"], total, order_properties)))
    return out


def events_due(store_status: str, known_status: str | None) -> list[str]:
    """Which metrics an order needs now, given what was already sent for it. Pure."""
    due: list[str] = []
    if known_status is None:
        due.append(PLACED_ORDER)
        known_status = "Placed"
    if known_status == "Placed" and store_status in FINAL_EVENTS:
        due.append(FINAL_EVENTS[store_status][0])
    return due


def _prepare(context: StepContext, rows: list[Row[Any]]) -> RowBuilder:
    """What the chunk's orders need (their known lifecycle, and for those with an event due, their
    lines and customers); the builder of one order's events and lifecycle row."""
    settings, tz = context.settings, context.settings.tz
    with context.state.connect() as conn:
        known = known_states(conn, [row.id for row in rows])
        # An order with a dead event is rebuilt whole from its current row, as if new (kl-sync keeps
        # what was sent: those keys are skipped); the outbox revives the dead rows (requeue_rebuilt).
        dead = {int(key.split(":")[1]) for key in dead_keys(conn, [
            f"{KEY_PREFIX}:{row.id}:{suffix}" for row in rows if row.id in known
            for suffix in ("placed", *(suffix for _, suffix in FINAL_EVENTS.values()))])}

    def due_of(row: Row[Any]) -> list[str]:
        return events_due(row.status, None if row.id in dead else known.get(row.id))

    changed = [row for row in rows if due_of(row)]
    items_by_order = order_items_by_order(context.store, [row.id for row in changed])
    customers = customers_by_id(context.store, (row.customer_id for row in changed), PROFILE_COLUMNS)

    def build(row: Row[Any]) -> Built:
        due = due_of(row)
        if not due:
            return Built()
        events = build_order_events(
            row, items_by_order[row.id], customers.get(row.customer_id), metrics=due, tz=tz, now=context.now,
            backfill_after=settings.backfill_after, currency=settings.value_currency,
        )
        final_status = row.status if row.status in FINAL_EVENTS else "Placed"
        final_key = next((k for k, kind, p in events if p["metric"] in (CANCELLED_ORDER, FULFILLED_ORDER)), None)
        lifecycle = {"order_id": row.id, "customer_id": row.customer_id, "status": final_status,
                     "total": row.total, "final_key": final_key, "updated_at": utcnow()}
        if row.id not in known:
            lifecycle["placed_key"] = f"{KEY_PREFIX}:{row.id}:placed"
        return Built([OutboxItem(key, kind, payload) for key, kind, payload in events], (row.customer_id,), lifecycle)

    return build


def _record(conn: Connection, lifecycles: list[dict[str, Any]]) -> None:
    """An order seen for the first time gets its lifecycle row (with its Placed key); a known one moves on."""
    record_states(conn, [row for row in lifecycles if "placed_key" in row],
                  [row for row in lifecycles if "placed_key" not in row])


#: Process Orders: orders changed since the cursor (with a lookback), their lifecycle events.
ORDERS = StreamStep(
    name="orders",
    source=StoreStream(STREAM, rewind=lookback(lambda settings: settings.orders_lookback)),
    kinds=("order_event", "ordered_product"),
    key_prefix=KEY_PREFIX,
    prepare=_prepare,
    record=_record,
    progress_label="changed orders",
)


#: Queue the events of every order changed since the cursor (or of every order, ``from_start``).
process_orders = ORDERS.run
