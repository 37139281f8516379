import datetime as dt
import json

from sqlalchemy import select

from kl_sync.settings import load_settings
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from kl_sync.steps.orders import process_orders
from kl_sync.steps.parse import parse_log
from kl_sync.steps.suppress import suppress_touched
from tests.planting import T0, customer, log, order, plant, update

NOW = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def _suppressions(state):
    with state.connect() as conn:
        rows = conn.execute(select(outbox.c.key, outbox.c.payload).where(outbox.c.kind == "suppression"))
        return {r.key: json.loads(r.payload) for r in rows}


def test_suppression_follows_the_seed_rule(store_url, state_url):
    store = plant(
        store_url,
        customers_rows=[
            customer(1),  # active and subscribed: not suppressed
            customer(2, status="Dead"),
            customer(3, email_subscribed=False),
            customer(4, status="Dead", email=None),  # nothing to suppress by
            customer(5, status="Dead"),  # never touched by an event: not checked
            customer(6, email_subscribed=False, email=" Six@Example.com"),  # touched through an order only
        ],
        log_rows=[log(1, "shipping.email", 1), log(2, "failed.payment", 2), log(3, "contact.form", 3),
                  log(4, "cancelled", 4)],
        order_rows=[order(1, 6, "Placed")],
    )
    state = open_state(state_url)
    settings = load_settings()
    parse_log(store, state, settings, now=NOW)
    process_orders(store, state, settings, now=NOW)
    result = suppress_touched(store, state, settings)
    # Customers 1, 2, 3 (parse) and 6 (orders); 4's event was dead-lettered, so nothing touched them.
    assert result.rows_read == 4
    assert _suppressions(state) == {
        "suppress:c2@example.com": {"email": "c2@example.com"},
        "suppress:c3@example.com": {"email": "c3@example.com"},
        "suppress:six@example.com": {"email": "six@example.com"},
    }
    # Consumed: a second check has nobody to look at.
    assert suppress_touched(store, state, settings).rows_read == 0

    # Touched again while still suppressible: once per e-mail. A changed e-mail is suppressed too.
    update(store, "customers", 2, email="new2@example.com", updated_at=T0 + dt.timedelta(days=1))
    from tests.planting import add

    add(store, "system_log", [log(5, "failed.payment", 2), log(6, "failed.payment", 3)])
    parse_log(store, state, settings, now=NOW)
    again = suppress_touched(store, state, settings)
    assert again.rows_read == 2 and again.queued == 1
    assert "suppress:new2@example.com" in _suppressions(state)
