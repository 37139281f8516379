import datetime as dt
import json

from sqlalchemy import select

from kl_sync.settings import load_settings
from kl_sync import state as st
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox, touched_customers
from kl_sync.steps.parse import parse_log
from tests.planting import T0, customer, log, plant

NOW = dt.datetime(2024, 5, 20, 12, 0, tzinfo=dt.UTC)


def _outbox(state):
    with state.connect() as conn:
        return {r.key: json.loads(r.payload) for r in conn.execute(select(outbox.c.key, outbox.c.payload))}


def test_parse_queues_tracked_rows_with_current_profile_and_dead_letters_the_rest(store_url, state_url):
    store = plant(
        store_url,
        customers_rows=[
            customer(1, email="  Ava.Smith@Example.COM ", first_name="  Ava ", status="Pending", schedule=None, box=None),
            customer(2, email="bob@", status="Active"),
            customer(3, email=None),
            customer(4, status="Dead", email_subscribed=False),
        ],
        log_rows=[
            log(1, "started.signup", 1, T0, data='{"box": "Local Harvest Box", "price": "39.95"}'),
            log(2, "login", 1, T0),  # not tracked: ignored, no dead letter
            log(3, "failed.payment", 2, T0),  # malformed e-mail
            log(4, "cancelled", 3, T0),  # no e-mail
            log(5, "referral.credit", 99, T0),  # deleted customer
            log(6, "referral.credit", 1, T0, data='{"amount": "10.00", '),  # broken JSON
            log(7, "contact.form", None, T0, data='{"email": "Visitor@Mail.example.org", "subject": "Hi"}'),
            log(8, "contact.form", None, T0, data='{"subject": "no email"}'),
            log(9, "shipping.email", 4, NOW.replace(tzinfo=None) - dt.timedelta(hours=2), data='[1, 2]'),
        ],
    )
    state = open_state(state_url)
    settings = load_settings(store_timezone="America/New_York")

    result = parse_log(store, state, settings, run_id="r1", now=NOW)

    assert result.rows_read == 8 and result.queued == 3 and result.dead_letters == 5
    queued = _outbox(state)
    assert set(queued) == {"log:1", "log:7", "log:9"}
    signup = queued["log:1"]
    assert signup["metric"] == "started.signup"
    assert signup["time"] == "2024-05-15T12:35:32-04:00"  # the log's own time, with the store's offset
    assert signup["unique_id"] == "log:1" and signup["backfill"] is True
    assert signup["properties"] == {"box": "Local Harvest Box", "price": "39.95", "message": "msg", "log_id": 1,
                                    "log_type": "started.signup"}
    assert signup["profile"] == {
        "email": "ava.smith@example.com", "external_id": "1", "first_name": "Ava", "last_name": "Last1",
        "properties": {"Schedule": None, "Status": "Pending", "Box": None,
                       "SignUpDate": "2024-05-15T12:35:32-04:00", "HasFilledOutProfile": True},
    }
    assert queued["log:7"]["profile"] == {"email": "visitor@mail.example.org"}
    assert queued["log:9"]["backfill"] is False and queued["log:9"]["properties"]["data"] == [1, 2]
    assert queued["log:9"]["profile"]["properties"]["Status"] == "Dead"

    with state.connect() as conn:
        reasons = {d["key"]: d["reason"] for d in st.list_dead_letters(conn)}
        assert st.get_cursor(conn, "system_log") == [9]
        assert set(conn.execute(select(touched_customers.c.customer_id)).scalars()) == {1, 4}
    assert reasons == {
        "log:3": "log 3: customer 2 has a malformed e-mail 'bob@'",
        "log:4": "log 4: customer 3 has no e-mail",
        "log:5": "log 5: customer 99 is not in the store (deleted?)",
        "log:6": "log 6: data is not valid JSON (Expecting property name enclosed in double quotes at char 20)",
        "log:8": "log 8: no customer, and its data has no e-mail",
    }


def test_rerun_and_initial_sync_add_nothing_twice(store_url, state_url):
    store = plant(store_url, customers_rows=[customer(1), customer(2, email="bad")],
                  log_rows=[log(i, "shipping.email", 1 + i % 2, T0 + dt.timedelta(minutes=i)) for i in range(1, 21)])
    state = open_state(state_url)
    settings = load_settings(chunk_size=7)
    first = parse_log(store, state, settings, now=NOW)
    assert (first.queued, first.dead_letters) == (10, 10)
    again = parse_log(store, state, settings, now=NOW)  # re-reads the lookback (all 20 ids): nothing new
    assert (again.rows_read, again.queued, again.dead_letters) == (0, 0, 0)
    initial = parse_log(store, state, settings, from_start=True, now=NOW)
    assert (initial.rows_read, initial.queued, initial.dead_letters) == (20, 0, 0)
    with state.connect() as conn:
        assert len(st.list_dead_letters(conn)) == 10
        assert st.get_cursor(conn, "system_log") == [20]


def test_tracked_types_and_metric_names_are_settings(store_url, state_url):
    store = plant(store_url, customers_rows=[customer(1)],
                  log_rows=[log(1, "started.signup", 1), log(2, "login", 1), log(3, "cancelled", 1)])
    state = open_state(state_url)
    settings = load_settings(log_metrics={"started.signup": "Started Signup (server)", "login": "Logged In"})
    result = parse_log(store, state, settings, now=NOW)
    assert result.by_metric == {"Started Signup (server)": 1, "Logged In": 1}
    assert set(_outbox(state)) == {"log:1", "log:2"}
