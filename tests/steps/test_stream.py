"""The declared steps over the one stream loop: every key names the step that wrote it."""

import pytest
from sqlalchemy import select

from kl_sync.kinds import KINDS
from kl_sync.pipeline import STORE_STEPS, run_step, start_sync, step_for_key
from kl_sync.settings import load_settings
from kl_sync.state.tables import dead_letters, outbox
from tests.planting import T0, customer, item, log, order, plant


def test_every_key_names_the_step_that_can_rebuild_it(tmp_path):
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    plant(
        store_url,
        customers_rows=[customer(1), customer(2, status="Dead"), customer(3, email="not an e-mail")],
        log_rows=[log(1, "shipping.email", 1), log(2, "cancelled", 2), log(3, "contact.form", 3)],
        order_rows=[order(1, 1, "Completed"), order(2, 3, "Placed")],
        item_rows=[item(1, 1), item(2, 1, name="Sourdough Loaf", price="6.50")],
    )
    settings = load_settings(store_url=store_url, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    run = start_sync(settings, steps=list(STORE_STEPS))
    for name in STORE_STEPS:
        run_step(run, name)
    with run.state.connect() as conn:
        queued = conn.execute(select(outbox.c.key, outbox.c.kind)).all()
        letters = conn.execute(select(dead_letters.c.key, dead_letters.c.step, dead_letters.c.kind)).all()

    # Every step wrote something (the suppress step finds the Dead customer suppressed by the customers
    # step already), and every kind it wrote is registered and declared by it.
    assert {step_for_key(key).name for key, _ in queued} == set(STORE_STEPS) - {"suppress"}
    assert (f"profile:2:{T0.isoformat()}:suppress:c2@example.com", "suppression") in queued
    for key, kind in queued:
        assert kind in KINDS and kind in step_for_key(key).kinds, (key, kind)
    # A bad row's letter is keyed so that its step can read it again: log:3 (bad e-mail), order:2.
    assert sorted((key, step) for key, step, _ in letters) == [("log:3", "parse"), ("order:2", "orders"),
                                                               ("profile:3", "customers")]
    for key, step, kind in letters:
        assert step_for_key(key).name == step and kind == step_for_key(key).kinds[0]


def test_a_key_no_step_writes_is_an_error():
    with pytest.raises(ValueError, match="no step writes keys like 'nosuch:1'"):
        step_for_key("nosuch:1")


def test_steps_declare_distinct_key_prefixes():
    prefixes = [step.key_prefix for step in STORE_STEPS.values()]
    assert len(prefixes) == len(set(prefixes)) and all(":" not in prefix for prefix in prefixes)


def test_a_chunks_items_are_freed_before_the_next_chunk_is_read_and_built(tmp_path):
    """A step holds one chunk's output at a time: what a chunk built (payloads and their encoded text) is
    freed once committed, not kept through the next chunk's reading and building (twice the store
    process's memory in benchmark 4). Counted from the live objects when each chunk is prepared."""
    import dataclasses
    import gc

    from kl_sync.state.migrate import open_state
    from kl_sync.state.outbox import OutboxItem
    from kl_sync.store.readers import store_engine

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    plant(store_url, customers_rows=[customer(1)], log_rows=[log(i, "shipping.email", 1) for i in range(1, 31)])
    settings = load_settings(store_url=store_url, state_url=f"sqlite:///{tmp_path / 'state.db'}", chunk_size=10)
    parse = STORE_STEPS["parse"]
    alive_at_each_chunk = []

    def alive() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, OutboxItem))

    before = alive()  # what other tests left alive (a failed test's frames, say): not this step's

    def prepare(context, rows):
        alive_at_each_chunk.append(alive() - before)
        return parse.prepare(context, rows)

    counting = dataclasses.replace(parse, prepare=prepare)
    result = counting.run(store_engine(store_url), open_state(settings.state_url), settings, from_start=True)

    assert result.queued == 30
    assert alive_at_each_chunk == [0, 0, 0]


def test_a_chunk_keeps_each_item_as_its_checked_text_not_its_payload(tmp_path):
    """A built item keeps its encoded text and what the outbox's columns and the counts read (its
    metric and time), not the payload (~3x the text; 15,000 items for a chunk of 5,000 orders): the
    rows queued carry the payload, metric and time, and the counts the metrics."""
    import dataclasses

    from kl_sync.state.codec import loads
    from kl_sync.state.migrate import open_state
    from kl_sync.steps.stream import _build
    from kl_sync.store.readers import store_engine

    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    plant(store_url, customers_rows=[customer(1)], log_rows=[log(i, "shipping.email", 1) for i in range(1, 4)])
    settings = load_settings(store_url=store_url, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    parse = STORE_STEPS["parse"]
    built = []

    def prepare(context, rows):  # the chunk's items as the step builds them, built once more aside
        build = parse.prepare(context, rows)
        built.extend(_build(parse, rows, build).items)
        return build

    state = open_state(settings.state_url)
    result = dataclasses.replace(parse, prepare=prepare).run(store_engine(store_url), state, settings, from_start=True)
    assert result.queued == 3 and result.by_metric == {"shipping.email": 3}
    with state.connect() as conn:
        queued = {row.key: row for row in conn.execute(select(outbox.c.key, outbox.c.payload, outbox.c.metric,
                                                                   outbox.c.event_time))}
    assert len(built) == 3 and [item.payload for item in built] == [None] * 3
    for item in built:
        row = queued[item.key]
        assert item.decoded() == loads(row.payload) and loads(row.payload)["metric"] == "shipping.email"
        assert (row.metric, row.event_time) == item.event_facts() and row.event_time is not None
