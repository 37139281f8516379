import datetime as dt
import pytest
from sqlalchemy import func, select

from kl_sync.app.cli import main
from kl_sync.db import make_engine
from kl_sync.store import STREAMS, read_after
from kl_sync.store.contract import TABLES, customers, metadata, order_items, orders, system_log
from kl_sync.store.generate import generate_rows, generate_store

END = dt.datetime(2026, 11, 1, 12, 0)


def test_generator_is_deterministic_and_realistic():
    first = generate_rows(400, seed=7, end=END)
    again = generate_rows(400, seed=7, end=END)
    other = generate_rows(400, seed=8, end=END)
    assert first.log == again.log and first.orders == again.orders and first.customers == again.customers
    assert first.log != other.log

    statuses = {c["status"] for c in first.customers}
    assert {"Pending", "Active", "Stopped", "Dead"} <= statuses
    assert {c["schedule"] for c in first.customers} >= {"Weekly", "Biweekly", "Monthly", None}
    assert any(not c["email_subscribed"] for c in first.customers)
    assert any(c["email"] is None for c in first.customers)
    assert any(c["email"] and "@" not in c["email"] or (c["email"] or "").endswith("@") for c in first.customers)
    assert any(c["first_name"] != c["first_name"].strip() for c in first.customers)
    assert any(not c["first_name"].isascii() for c in first.customers)
    stalled = [c for c in first.customers if c["status"] == "Pending"]
    assert stalled and all(c["box"] is None and c["schedule"] is None for c in stalled)

    types = {row["type"] for row in first.log}
    assert {"cancelled", "contact.form", "failed.payment", "referral.credit", "shipping.email", "started.signup"} <= types
    assert types - {"cancelled", "contact.form", "failed.payment", "referral.credit", "shipping.email", "started.signup"}
    assert any(r["type"] == "contact.form" and r["customer_id"] is None for r in first.log)
    assert any(r["customer_id"] and r["customer_id"] > 400 for r in first.log)  # deleted customers
    assert {o["status"] for o in first.orders} == {"Placed", "Cancelled", "Completed"}
    ids = [r["id"] for r in first.log]
    assert ids == sorted(ids) and [r["created_at"] for r in first.log] == sorted(r["created_at"] for r in first.log)
    assert all(r["created_at"] <= END for r in first.log)
    assert min(c["created_at"] for c in first.customers) < END - dt.timedelta(days=365)  # years of history
    assert any(r["created_at"] > END - dt.timedelta(days=1) for r in first.log)  # and a recent day


def test_generate_and_stream_every_table(store_url):
    engine = make_engine(store_url)
    counts = generate_store(engine, customers_count=60, seed=3, end=END)
    with engine.connect() as conn:
        for table in TABLES:
            assert conn.execute(select(func.count()).select_from(table)).scalar_one() == getattr(counts, table.name)

    for name, stream in STREAMS.items():
        seen = [row for chunk in read_after(engine, stream, None, chunk_size=37) for row in chunk]
        assert len(seen) == getattr(counts, name)
        keys = [stream.cursor_of(r) for r in seen]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)

    # Resuming after a cursor yields exactly the rows after it.
    log = STREAMS["system_log"]
    everything = [r.id for chunk in read_after(engine, log, None, chunk_size=1000) for r in chunk]
    middle = everything[len(everything) // 2]
    rest = [r.id for chunk in read_after(engine, log, (middle,), chunk_size=11) for r in chunk]
    assert rest == everything[everything.index(middle) + 1 :]

    # Composite cursors (updated_at, id) resume mid-timestamp without skipping ties.
    stream = STREAMS["orders"]
    all_orders = [stream.cursor_of(r) for chunk in read_after(engine, stream, None, chunk_size=500) for r in chunk]
    pivot = all_orders[len(all_orders) // 3]
    after = [stream.cursor_of(r) for chunk in read_after(engine, stream, pivot, chunk_size=7) for r in chunk]
    assert after == all_orders[all_orders.index(pivot) + 1 :]

    with engine.connect() as conn:
        row = conn.execute(select(orders).limit(1)).one()
        assert isinstance(row.created_at, dt.datetime) and row.total > 0
        item = conn.execute(select(order_items).limit(1)).one()
        assert item.categories and item.quantity >= 1
        # Unicode and odd whitespace survive the round trip on every backend.
        planted = [c for c in generate_rows(60, seed=3, end=END).customers if not c["first_name"].isascii()]
        assert planted
        for c in planted:
            stored = conn.execute(select(customers.c.first_name).where(customers.c.id == c["id"])).scalar_one()
            assert stored == c["first_name"]


def test_generator_refuses_a_store_with_rows(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    generate_store(engine, customers_count=5, seed=1, end=END)
    with pytest.raises(ValueError, match="already has"):
        generate_store(engine, customers_count=5, seed=1, end=END)
    counts = generate_store(engine, customers_count=5, seed=1, end=END, replace=True)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(system_log)).scalar_one() == counts.system_log


def test_cli_store_generate(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["store", "generate", "--url", url, "--customers", "20", "--seed", "2"]) == 0
    assert "generated 20 customers" in capsys.readouterr().out
    assert main(["store", "generate", "--url", url, "--customers", "20"]) == 2
    assert "already has" in capsys.readouterr().err


def test_sqlite_ties_stored_without_fractions_are_not_skipped_between_chunks(tmp_path):
    # SQLite keeps datetimes as text in whatever format the store's writer chose; the generator, like
    # many writers, leaves out ".000000". Six orders share one updated_at, read two at a time: paging
    # compared as datetimes used to skip the four after the first chunk's last row.
    path = tmp_path / "store.db"
    engine = make_engine(f"sqlite:///{path}", sqlite_wal=False)
    metadata.create_all(engine, tables=list(TABLES))
    with engine.begin() as conn:
        for i in range(1, 7):
            conn.exec_driver_sql(
                "INSERT INTO orders (id, customer_id, status, total, created_at, updated_at) VALUES (?, 1, 'Placed', 10, ?, ?)",
                (i, "2025-01-01 10:00:00", "2025-01-01 10:00:00" if i < 6 else "2025-01-01 10:00:01"),
            )
    stream = STREAMS["orders"]
    read = [row.id for chunk in read_after(engine, stream, None, chunk_size=2) for row in chunk]
    assert read == [1, 2, 3, 4, 5, 6]
    # A caller's cursor (datetimes, as the state database keeps them) still resumes after it.
    later = [row.id for chunk in read_after(engine, stream, (dt.datetime(2025, 1, 1, 10, 0, 0, 500), 0), chunk_size=2)
             for row in chunk]
    assert later == [6]
