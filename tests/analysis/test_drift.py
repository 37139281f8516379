"""Klaviyo profiles against the store: who owns a profile, which properties are stale, the sentences."""

from __future__ import annotations

import pandas as pd

from kl_sync.analysis.drift import compare_profiles, drift_sentences
from kl_sync.analysis.loaders import KLAVIYO_PROFILE_COLUMNS

T0 = pd.Timestamp("2026-03-02 10:00:00")


def customer(id_: int, email: str | None, status="Active", schedule="Weekly", box="Local Harvest Box", created_days=0) -> dict:
    return {"id": id_, "email": email, "status": status, "schedule": schedule, "box": box,
            "created_at": T0 + pd.Timedelta(days=created_days), "updated_at": T0 + pd.Timedelta(days=created_days + 1)}


def profile(email: str, external_id=None, **properties) -> dict:
    row = {column: None for column in KLAVIYO_PROFILE_COLUMNS}
    return {**row, "profile_id": f"P-{email}", "email": email, "external_id": external_id, **properties}


def frames(customers: list[dict], profiles: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.DataFrame(profiles, columns=KLAVIYO_PROFILE_COLUMNS), pd.DataFrame(customers)


def test_current_profiles_are_not_stale_and_missing_equals_blank():
    klaviyo, store = frames(
        [customer(1, "a@example.com"), customer(2, "b@example.com", status="Pending", schedule=None, box="  ")],
        [profile("a@example.com", Status="Active", Schedule="Weekly", Box="Local Harvest Box"),
         profile("b@example.com", Status="Pending", Schedule="", Box=None)],
    )

    drift = compare_profiles(klaviyo, store)

    assert len(drift.compared) == 2 and drift.stale.empty
    assert drift.by_field["profiles"].tolist() == [0, 0, 0]
    assert drift_sentences(drift) == ["Of 2 Klaviyo profiles, 2 belong to a store customer; 0 of them (0%) are stale."]


def test_stale_properties_are_named_per_profile_and_counted_per_property():
    klaviyo, store = frames(
        [customer(1, "a@example.com"), customer(2, "b@example.com", status="Stopped"), customer(3, "c@example.com")],
        [profile("a@example.com", Status="Pending", Schedule=None, Box=None),
         profile("b@example.com", Status="Active", Schedule="Weekly", Box="Local Harvest Box"),
         profile("c@example.com", Status="Active", Schedule="Weekly", Box="Local Harvest Box")],
    )

    drift = compare_profiles(klaviyo, store)

    assert dict(zip(drift.stale["email"], drift.stale["stale_fields"])) == {"a@example.com": "Status, Schedule, Box", "b@example.com": "Status"}
    row = drift.stale.set_index("email").loc["b@example.com"]
    assert (row["Status_klaviyo"], row["Status_store"], row["store_updated_at"]) == ("Active", "Stopped", T0 + pd.Timedelta(days=1))
    assert dict(zip(drift.by_field["property"], drift.by_field["profiles"])) == {"Status": 2, "Schedule": 1, "Box": 1}
    assert drift_sentences(drift)[0] == ("Of 3 Klaviyo profiles, 3 belong to a store customer; 2 of them (67%) are stale "
                                         "(Status differs for 2, Schedule differs for 1, Box differs for 1).")


def test_external_id_wins_over_the_email_and_the_newest_customer_owns_a_shared_email():
    klaviyo, store = frames(
        [customer(1, "old@example.com", status="Stopped"), customer(2, "new@example.com"),
         customer(3, "shared@example.com", status="Stopped"), customer(4, " Shared@Example.com", created_days=5)],
        [profile("old@example.com", external_id="2", Status="Active", Schedule="Weekly", Box="Local Harvest Box"),
         profile("shared@example.com", Status="Active", Schedule="Weekly", Box="Local Harvest Box")],
    )

    drift = compare_profiles(klaviyo, store)

    assert dict(zip(drift.compared["email"], drift.compared["customer_id"])) == {"old@example.com": 2, "shared@example.com": 4}
    assert drift.stale.empty


def test_profiles_without_a_customer_and_customers_without_a_profile():
    klaviyo, store = frames(
        [customer(1, "a@example.com"), customer(2, "nobody-sent@example.com"), customer(3, "not an e-mail")],
        [profile("a@example.com", Status="Active", Schedule="Weekly", Box="Local Harvest Box"), profile("visitor@example.org")],
    )

    drift = compare_profiles(klaviyo, store)

    assert drift.klaviyo_only["email"].tolist() == ["visitor@example.org"]
    assert drift.store_only["email"].tolist() == ["nobody-sent@example.com"]
    assert drift_sentences(drift)[-1] == ("1 Klaviyo profile has no customer in the store, and 1 store customer with a valid "
                                          "e-mail has no Klaviyo profile.")


def test_no_profile_belongs_to_the_store():
    klaviyo, store = frames([customer(1, "a@example.com")], [profile("visitor@example.org")])

    assert drift_sentences(compare_profiles(klaviyo, store)) == ["None of the 1 Klaviyo profile belongs to a store customer."]
