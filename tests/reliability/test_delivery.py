"""Delivery you can prove: against an emulator that processes events 2 s after accepting them and
loses 3 % of them, three syncs spaced more than KL_SYNC_VERIFY_AFTER apart leave every expected log
and order event in Klaviyo exactly once, and ``kl-sync status --json`` counts them verified.

Sync 1 sends everything (nothing is due yet); sync 2 finds the lost events missing past the grace and
sends them again; sync 3 verifies those. The loss is seeded: with this store and seed some events are
lost and none of them twice (an event lost on every send is tests/steps/test_verify.py's)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from kl_sync.app.cli import main
from kl_sync.emulator import running_emulator
from kl_sync.state.migrate import open_state
from kl_sync.state.tables import outbox
from tests.reliability.helpers import make_store

KEY = "pk_delivery"
VERIFY_AFTER = 3.0
EVENT_KINDS = ("log_event", "order_event", "ordered_product")


def test_three_syncs_leave_every_event_in_klaviyo_once_and_verified(tmp_path: Path, monkeypatch, capsys):
    store_url = make_store(f"sqlite:///{tmp_path / 'store.db'}", customers=3, seed=11, years=0.5)
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    with running_emulator(tmp_path / "klaviyo", api_keys=(KEY,), processing_delay=2, lose=0.03, lose_seed=7) as emu:
        for name, value in {"KL_SYNC_STORE_URL": store_url, "KL_SYNC_STATE_URL": state_url,
                            "KLAVIYO_BASE_URL": emu.base_url, "KLAVIYO_API_KEY": KEY,
                            "KL_SYNC_VERIFY_AFTER": f"PT{VERIFY_AFTER:g}S", "KL_SYNC_VERIFY_GRACE": "PT3S"}.items():
            monkeypatch.setenv(name, value)
        runs = []
        for number in range(3):
            if number:
                time.sleep(VERIFY_AFTER + 0.5)  # the previous sync's sends are all due now
            assert main(["sync", "--no-prefect", "--json", *(["--from-start"] if number == 0 else [])]) == 0
            runs.append(json.loads(capsys.readouterr().out)["verify"])
        lost = [e["unique_id"] for e in emu.events(accepted=True) if e["status"] == "lost"]
        shown = Counter(e["unique_id"] for e in emu.events())

    with open_state(state_url).connect() as conn:
        expected = set(conn.execute(
            select(outbox.c.key).where(outbox.c.kind.in_(EVENT_KINDS), outbox.c.status != "dead")).scalars())
    assert len(expected) > 100 and 0 < len(lost) < 20 and len(set(lost)) == len(lost)
    assert shown == Counter(dict.fromkeys(expected, 1))
    assert runs[0]["rows_read"] == 0  # nothing was due in the first sync
    assert runs[1]["resent"] == len(lost) and runs[2]["verified"] == len(lost)

    assert main(["status", "--json"]) == 0
    delivery = [row for row in json.loads(capsys.readouterr().out)["delivery"] if row["kind"] in EVENT_KINDS]
    assert sum(row["verified"] for row in delivery) == len(expected)
    assert {(row["queued"], row["sent"], row["missing"]) for row in delivery} == {(0, 0, 0)}
    assert {row["metric"] for row in delivery} >= {"Placed Order", "Ordered Product", "shipping.email"}


@pytest.mark.parametrize("setting, value", [("KL_SYNC_VERIFY_AFTER", "soon"), ("KL_SYNC_VERIFY_GRACE", "-PT1M"),
                                            ("KL_SYNC_VERIFY_MAX_SENDS", "0")])
def test_a_bad_verification_setting_is_one_line(monkeypatch, capsys, setting, value):
    monkeypatch.setenv(setting, value)
    assert main(["verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"kl-sync: configuration error: {setting}: ") and "\n" not in err
