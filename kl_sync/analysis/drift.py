"""Klaviyo against the store: profiles whose ``Status``, ``Schedule`` or ``Box`` no longer say what the
store says.

Flows and segments in Klaviyo read these properties (a win-back flow filters on Status), so a stale
one sends the wrong e-mail. Today kl-sync refreshes a profile only when it sends that customer an
event (the profile rides along, with the customer's CURRENT values); a customer who changed without
a new event keeps the old values in Klaviyo until the customers step sends every changed customer.

A Klaviyo profile belongs to the store customer whose id is its ``external_id``, else to the newest
customer with its (folded) e-mail.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from kl_sync.analysis.text import count, pct, verb
from kl_sync.normalize import normalize_email

#: Klaviyo profile property -> store column.
COMPARED = {"Status": "status", "Schedule": "schedule", "Box": "box"}


@dataclass(frozen=True)
class ProfileDrift:
    #: One row per Klaviyo profile with a store customer: ``email``, ``customer_id``, ``profile_id``,
    #: ``<Property>_klaviyo`` / ``<Property>_store`` for each compared property, ``stale_fields``
    #: (comma-separated, empty when current) and the customer's ``store_updated_at``.
    compared: pd.DataFrame
    #: The rows of ``compared`` with a stale field.
    stale: pd.DataFrame
    #: Per compared property: ``profiles`` whose value is stale.
    by_field: pd.DataFrame
    #: Klaviyo profiles no store customer owns (e.g. contact-form visitors).
    klaviyo_only: pd.DataFrame
    #: Store customers with a valid e-mail and no Klaviyo profile.
    store_only: pd.DataFrame


def _value(value: object) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):  # type: ignore[arg-type]
        return None
    text = str(value).strip()
    return text or None


def compare_profiles(klaviyo_profiles: pd.DataFrame, customers: pd.DataFrame) -> ProfileDrift:
    """Each Klaviyo profile's Status, Schedule and Box against its store customer's current values."""
    people = customers.copy()
    people["email"] = people["email"].map(normalize_email)
    by_email = people[people["email"].notna()].sort_values(["created_at", "id"], kind="mergesort").drop_duplicates("email", keep="last")
    ids = {str(cid): cid for cid in people["id"]}

    profiles = klaviyo_profiles.copy()
    external = profiles["external_id"].map(lambda value: ids.get(str(value)) if _value(value) else None)
    email_owner = profiles["email"].map(dict(zip(by_email["email"], by_email["id"], strict=True)))
    profiles["customer_id"] = external.where(external.notna(), email_owner).astype("Int64")

    owned = profiles[profiles["customer_id"].notna()]
    store = people.set_index("id")
    compared = pd.DataFrame({
        "email": owned["email"].to_numpy(),
        "customer_id": owned["customer_id"].to_numpy(),
        "profile_id": owned["profile_id"].to_numpy(),
    })
    stale_parts: list[pd.Series] = []
    for prop, column in COMPARED.items():
        # Plain lists: a pandas string column would turn None back into NaN, and NaN != NaN.
        klaviyo = [_value(value) for value in owned[prop]]
        current = [_value(value) for value in store.loc[owned["customer_id"].astype(int), column]] if len(owned) else []
        compared[f"{prop}_klaviyo"] = pd.Series(klaviyo, dtype="object")
        compared[f"{prop}_store"] = pd.Series(current, dtype="object")
        differs = pd.Series([k != s for k, s in zip(klaviyo, current, strict=True)], dtype=bool)
        stale_parts.append(differs.map({True: prop, False: ""}))
    compared["stale_fields"] = [", ".join(part for part in parts if part) for parts in zip(*stale_parts, strict=True)] if len(owned) else []
    compared["store_updated_at"] = store.loc[owned["customer_id"].astype(int), "updated_at"].to_numpy() if len(owned) else []
    compared = compared.sort_values(["customer_id"], kind="mergesort").reset_index(drop=True)

    stale = compared[compared["stale_fields"] != ""].reset_index(drop=True)
    by_field = pd.DataFrame({
        "property": list(COMPARED),
        "profiles": [int(stale["stale_fields"].str.split(", ").map(lambda names, p=prop: p in names).sum()) if len(stale) else 0
                     for prop in COMPARED],
    })
    klaviyo_only = profiles[profiles["customer_id"].isna()].drop(columns="customer_id").reset_index(drop=True)
    store_only = by_email[~by_email["id"].isin(profiles["customer_id"].dropna())].reset_index(drop=True)
    return ProfileDrift(compared, stale, by_field, klaviyo_only, store_only)


def drift_sentences(drift: ProfileDrift) -> list[str]:
    """What the comparison says, and what makes it empty."""
    owned, stale = len(drift.compared), len(drift.stale)
    total = owned + len(drift.klaviyo_only)
    if not owned:
        return [f"None of the {count(total, 'Klaviyo profile')} belongs to a store customer."]
    fields = ", ".join(f"{row.property} differs for {row.profiles}" for row in drift.by_field.itertuples() if row.profiles)
    sentences = [
        f"Of {count(total, 'Klaviyo profile')}, {owned} {verb(owned, 'belongs', 'belong')} to a store customer; {stale} of "
        f"them ({pct(stale, owned)}) {verb(stale, 'is', 'are')} stale"
        + (f" ({fields})." if stale else ".")
    ]
    if stale:
        sentences.append(
            "kl-sync refreshes a profile only when it sends that customer an event; the customers step, which sends "
            "every changed customer's Status, Schedule and Box, should leave this list empty."
        )
    if len(drift.klaviyo_only) or len(drift.store_only):
        sentences.append(
            f"{count(len(drift.klaviyo_only), 'Klaviyo profile')} {verb(len(drift.klaviyo_only), 'has', 'have')} no customer "
            f"in the store, and {count(len(drift.store_only), 'store customer')} with a valid e-mail "
            f"{verb(len(drift.store_only), 'has', 'have')} no Klaviyo profile."
        )
    return sentences
