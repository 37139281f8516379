"""Events as Klaviyo keeps them: first per (profile, metric, unique_id) wins, metrics by name,
profile data sent along updates the profile."""

from __future__ import annotations

import re
from pathlib import Path

from kl_sync.emulator import running_emulator
from tests.emulator.klaviyo_bodies import Api, bulk_entry, bulk_events, event, single_event


def test_the_first_event_per_profile_metric_and_unique_id_wins_silently(fresh_emu, fresh_api):
    # Across requests (within one, a repeat fails the request: test_emulator_processing.py).
    first = bulk_events([bulk_entry("ann@example.com", [event(unique_id="order:1:placed", properties={"Attempt": 1})])])
    assert fresh_api.post("/api/event-bulk-create-jobs", first).status_code == 202
    second = bulk_events([bulk_entry("ann@example.com", [event(unique_id="order:1:placed", properties={"Attempt": 2})])])
    assert fresh_api.post("/api/event-bulk-create-jobs", second).status_code == 202
    again = single_event("ANN@example.com", unique_id="order:1:placed", properties={"Attempt": 3})
    assert fresh_api.post("/api/events", again).status_code == 202
    (stored,) = fresh_emu.events()
    assert stored["properties"] == {"Attempt": 1}
    assert stored["unique_id"] == "order:1:placed"


def test_unique_id_dedupes_per_profile_and_metric_only(fresh_emu, fresh_api):
    body = bulk_events(
        [
            bulk_entry(
                "ann@example.com", [event("Placed Order", unique_id="k"), event("Fulfilled Order", unique_id="k")]
            ),
            bulk_entry("bob@example.com", [event("Placed Order", unique_id="k")]),
        ]
    )
    assert fresh_api.post("/api/event-bulk-create-jobs", body).status_code == 202
    kept = sorted((e["profile_email"], e["metric"]) for e in fresh_emu.events())
    assert kept == [
        ("ann@example.com", "Fulfilled Order"),
        ("ann@example.com", "Placed Order"),
        ("bob@example.com", "Placed Order"),
    ]


def test_without_unique_id_one_event_per_profile_metric_and_second(fresh_emu, fresh_api):
    # One request per event: two in one second in one request repeat the default unique_id, which
    # fails the request (test_emulator_processing.py).
    for n, time in ((1, "2024-05-15T12:00:00+00:00"), (2, "2024-05-15T12:00:00.700+00:00"), (3, "2024-05-15T12:00:01+00:00")):
        body = bulk_events([bulk_entry("ann@example.com", [event(time=time, unique_id=None, properties={"n": n})])])
        assert fresh_api.post("/api/event-bulk-create-jobs", body).status_code == 202
    assert [e["properties"]["n"] for e in fresh_emu.events()] == [1, 3]
    assert [e["unique_id"] for e in fresh_emu.events()] == [None, None]


def test_dedupe_and_metric_ids_survive_a_restart(tmp_path: Path):
    data_dir = tmp_path / "account"
    body = single_event("ann@example.com", unique_id="log:42", properties={"Run": "first"})
    with running_emulator(data_dir) as emu:
        api = Api(emu.base_url)
        assert api.post("/api/events", body).status_code == 202
        metric_ids = {m["id"] for m in api.get("/api/metrics").json()["data"]}
    body["data"]["attributes"]["properties"] = {"Run": "second"}
    with running_emulator(data_dir) as emu:
        api = Api(emu.base_url)
        assert api.post("/api/events", body).status_code == 202
        assert api.post("/api/events", single_event("ann@example.com", unique_id="log:43")).status_code == 202
        assert [(e["unique_id"], e["properties"].get("Run")) for e in emu.events()] == [
            ("log:42", "first"),
            ("log:43", None),
        ]
        assert {m["id"] for m in api.get("/api/metrics").json()["data"]} == metric_ids


def test_every_attribute_of_an_event_is_kept(fresh_emu, fresh_api):
    entry = bulk_entry(
        "ann@example.com",
        [
            event(
                "Ordered Product",
                unique_id="order:7:item:3",
                value=12.5,
                value_currency="USD",
                properties={"ProductName": "Kale", "Categories": ["Greens"], "Quantity": 2, "$extra": {"x": 1}},
            ),
            event("Placed Order", unique_id="order:7:placed", backfill=False),
        ],
    )
    entry["attributes"]["backfill"] = True  # the entry's default; an event's own value wins
    assert fresh_api.post("/api/event-bulk-create-jobs", bulk_events([entry])).status_code == 202
    product, order = fresh_emu.events()
    assert product == {
        **product,
        "metric": "Ordered Product",
        "profile_email": "ann@example.com",
        "unique_id": "order:7:item:3",
        "time": "2024-05-15T16:35:32+00:00",
        "value": 12.5,
        "value_currency": "USD",
        "backfill": True,
        "properties": {"ProductName": "Kale", "Categories": ["Greens"], "Quantity": 2, "$extra": {"x": 1}},
        "source": "server",
    }
    assert order["backfill"] is False and order["value"] is None


def test_metrics_are_created_once_by_name(fresh_emu, fresh_api):
    for uid in ("a", "b"):
        fresh_api.post("/api/events", single_event(metric="Cancelled Order", unique_id=uid))
    fresh_api.post("/api/events", single_event(metric="Placed Order", unique_id="c"))
    metrics = fresh_api.get("/api/metrics").json()["data"]
    assert sorted(m["attributes"]["name"] for m in metrics) == ["Cancelled Order", "Placed Order"]
    assert all(m["id"] and m["attributes"]["integration"]["name"] == "API" for m in metrics)


def test_profile_data_sent_with_events_updates_the_profile_later_write_wins(fresh_emu, fresh_api):
    first = bulk_entry("Ann@Example.com", [event(unique_id="1")], first_name="Ann",
                       properties={"Status": "Active", "Box": "Small"})
    second = bulk_entry("ann@example.com", [event(unique_id="2")], last_name="Lee",
                        properties={"Status": "Stopped"})
    assert fresh_api.post("/api/event-bulk-create-jobs", bulk_events([first, second])).status_code == 202
    (person,) = fresh_emu.profiles()
    assert person["first_name"] == "Ann" and person["last_name"] == "Lee"
    assert person["properties"] == {"Status": "Stopped", "Box": "Small"}
    assert {e["profile_id"] for e in fresh_emu.events()} == {person["id"]}


def test_client_events_cannot_change_a_profiles_identifiers(fresh_emu, fresh_api):
    fresh_api.post("/api/profile-import", {"data": {"type": "profile", "attributes": {
        "email": "ann@example.com", "external_id": "cust-1"}}})
    profile_id = fresh_emu.profiles()[0]["id"]
    body = single_event(unique_id="web:1")
    body["data"]["attributes"]["profile"] = {"data": {"type": "profile", "id": profile_id, "attributes": {
        "email": "other@example.com", "first_name": "Ann"}}}
    response = fresh_api.session.post(
        f"{fresh_api.base_url}/client/events", params={"company_id": fresh_emu.public_key}, json=body, timeout=30
    )
    assert response.status_code == 202
    (person,) = fresh_emu.profiles()
    assert person["email"] == "ann@example.com" and person["first_name"] == "Ann"


def test_concurrent_writers_never_store_a_duplicate(fresh_emu):
    from concurrent.futures import ThreadPoolExecutor

    def batch(worker: int, round_: int) -> list[tuple[str, str]]:
        return [(f"c{k % 7}@example.com", f"u{(worker * 3 + round_ * 5 + k) % 40}") for k in range(60)]

    def send(worker: int) -> list[int]:
        api = Api(fresh_emu.base_url)
        statuses = []
        for round_ in range(4):
            pairs = batch(worker, round_)
            body = bulk_events([bulk_entry(email, [event(unique_id=uid)]) for email, uid in pairs])
            statuses.append(api.post("/api/event-bulk-create-jobs", body).status_code)
        return statuses

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for result in pool.map(send, range(4)) for s in result]
    assert set(statuses) == {202}
    expected = {pair for worker in range(4) for round_ in range(4) for pair in batch(worker, round_)}
    stored = [(e["profile_email"], e["unique_id"]) for e in fresh_emu.events()]
    assert len(stored) == len(set(stored))
    assert set(stored) == expected
    assert len(fresh_emu.profiles()) == 7


def test_properties_come_back_as_sent_and_every_event_has_its_own_ids(fresh_emu, fresh_api):
    """Properties are kept as JSON text (orjson writes it, the standard library where orjson would
    not write the same: a null beside NaN's place, an integer beyond 64 bits); every event of one
    request gets its own id and version-4 uuid (random bytes read once for the request)."""
    properties = [
        {"n": None, "f": 1e-05, "big": 2**70, "text": "é\n\"", "list": [1.5, None, {"x": []}]},
        {"plain": 1, "neg": -0.0, "max": 2**64 - 1},
        {"empty": {}},
    ]
    entry = bulk_entry("ann@example.com", [event("Placed Order", unique_id=f"k{i}", properties=p)
                                           for i, p in enumerate(properties)])
    assert fresh_api.post("/api/event-bulk-create-jobs", bulk_events([entry])).status_code == 202
    stored = fresh_emu.events()
    assert [e["properties"] for e in stored] == properties
    assert all(type(a) is type(b) for e, p in zip(stored, properties) for a, b in zip(e["properties"].values(), p.values()))
    ids = [e["id"] for e in stored]
    assert len(set(ids)) == len(ids) == 3
    served = fresh_api.get("/api/events").json()["data"]
    uuids = [e["attributes"]["uuid"] for e in served]
    assert sorted(e["id"] for e in served) == sorted(ids) and len(set(uuids)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u) for u in uuids)


def test_stored_json_text_keeps_what_the_standard_librarys_decoder_took():
    """The account's JSON text (kl_sync.emulator.storage.values.dumps): orjson's where it writes the
    same values; the standard library's where orjson would not (Infinity, from ``1e400`` in a body,
    which orjson writes as null; an integer beyond 64 bits, which orjson refuses)."""
    import json

    from kl_sync.emulator.storage.values import dumps

    assert dumps(json.loads('{"p": 1e400, "q": -1e400}')) == '{"p":Infinity,"q":-Infinity}'
    assert dumps({"big": 2**70, "s": "é\n"}) == '{"big":1180591620717411303424,"s":"é\\n"}'
    assert dumps({"f": 1e-05, "n": 1}) == '{"f":0.00001,"n":1}'  # orjson's: the same float read back
    assert json.loads(dumps({"f": 1e-05})) == {"f": 1e-05}
    assert dumps({"f": 1e-05, "n": None}) == '{"f":1e-05,"n":null}'  # the standard library's
