"""Twins between server and browser events, on planted cases and against a plain greedy."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kl_sync.analysis.duplicates import (
    CSV_COLUMNS,
    DEFAULT_PAIRS,
    dedupe_check,
    dedupe_sentences,
    delay_sentences,
    find_duplicates,
    twin_sentences,
)

T0 = pd.Timestamp("2026-03-02 10:00:00", tz="UTC")  # a Monday, ISO week 2026-W10


def event(id_: str, metric: str, profile: str, seconds: float, email: str | None = None) -> dict:
    return {
        "id": id_,
        "metric": metric,
        "profile_id": profile,
        "email": email if email is not None else f"{profile}@example.com",
        "datetime": T0 + pd.Timedelta(seconds=seconds),
        "unique_id": None,
        "properties": {},
        "value": None,
    }


def frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def pairs_of(report) -> set[tuple[str, str]]:
    return set(zip(report.pairs["server_event_id"], report.pairs["browser_event_id"]))


def test_twin_inside_the_window_pairs_with_its_delay_and_one_outside_does_not():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0),
        event("b1", "Started Checkout", "p1", 42),
        event("s2", "cancelled", "p2", 0),
        event("b2", "Cancelled Account", "p2", 10 * 60 + 1),
    ))

    assert report.pairs[CSV_COLUMNS].to_dict("records") == [
        {"server_event_id": "s1", "browser_event_id": "b1", "email": "p1@example.com",
         "metric_pair": "started.signup / Started Checkout", "delay_seconds": 42.0},
    ]
    assert list(report.server_only["id"]) == ["s2"]
    assert list(report.browser_only["id"]) == ["b2"]


def test_window_edge_is_inclusive_and_the_browser_may_come_first():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 600),
        event("b1", "Started Checkout", "p1", 0),
    ))

    assert pairs_of(report) == {("s1", "b1")}
    assert report.pairs["delay_seconds"].tolist() == [-600.0]


def test_two_candidates_for_one_server_event_nearest_wins_the_other_stays_unpaired():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0),
        event("far", "Started Checkout", "p1", 200),
        event("near", "Started Checkout", "p1", -30),
    ))

    assert pairs_of(report) == {("s1", "near")}
    assert list(report.browser_only["id"]) == ["far"]
    assert report.server_only.empty


def test_greedy_takes_the_globally_nearest_pair_first():
    # b1 is nearest to s2 (5 s); s1 would also like b1 (20 s) and must fall back to b2 (100 s).
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0),
        event("s2", "started.signup", "p1", 25),
        event("b1", "Started Checkout", "p1", 20),
        event("b2", "Started Checkout", "p1", 100),
    ))

    assert pairs_of(report) == {("s2", "b1"), ("s1", "b2")}


def test_twins_need_the_same_profile_and_the_paired_metric():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0),
        event("b_other_profile", "Started Checkout", "p2", 5),
        event("b_other_metric", "Cancelled Account", "p1", 5),
        event("order", "Placed Order", "p1", 5),
    ))

    assert report.pairs.empty
    assert list(report.server_only["id"]) == ["s1"]
    assert sorted(report.browser_only["id"]) == ["b_other_metric", "b_other_profile"]
    assert "order" not in set(report.server_only["id"]) | set(report.browser_only["id"])


def test_without_profile_ids_the_folded_email_matches():
    rows = [event("s1", "started.signup", "x", 0, email="Ana@Example.com "), event("b1", "Started Checkout", "y", 9, email="ana@example.com")]
    for row in rows:
        row["profile_id"] = None

    report = find_duplicates(frame(*rows))

    assert pairs_of(report) == {("s1", "b1")}
    assert report.pairs["email"].tolist() == ["ana@example.com"]


def test_rates_per_metric_pair_and_iso_week():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0),
        event("b1", "Started Checkout", "p1", 30),
        event("s2", "started.signup", "p2", 0),  # server only
        event("b3", "Started Checkout", "p3", 7 * 86400),  # browser only, next week
        event("s4", "cancelled", "p1", 86400),
        event("b4", "Cancelled Account", "p1", 86400 + 61),
    ))

    rates = report.rates.set_index("metric_pair")
    signup = rates.loc["started.signup / Started Checkout"]
    assert (signup.server_events, signup.browser_events, signup.pairs, signup.server_only, signup.browser_only) == (2, 2, 1, 1, 1)
    assert signup.server_paired_rate == pytest.approx(0.5) and signup.browser_paired_rate == pytest.approx(0.5)
    assert rates.loc["cancelled / Cancelled Account", "server_paired_rate"] == pytest.approx(1.0)

    weekly = report.weekly.set_index(["metric_pair", "week"])
    assert weekly.loc[("started.signup / Started Checkout", "2026-W10"), "pairs"] == 1
    assert weekly.loc[("started.signup / Started Checkout", "2026-W10"), "server_only"] == 1
    assert weekly.loc[("started.signup / Started Checkout", "2026-W11"), "browser_only"] == 1
    assert weekly.loc[("started.signup / Started Checkout", "2026-W11"), "browser_paired_rate"] == 0.0


def test_no_events_gives_empty_tables_with_their_columns():
    report = find_duplicates(pd.DataFrame(columns=["id", "metric", "profile_id", "email", "datetime"]))

    assert list(report.pairs.columns[:5]) == CSV_COLUMNS and report.pairs.empty
    assert report.rates["pairs"].tolist() == [0, 0]
    assert report.weekly.empty


def test_csv_has_exactly_the_agreed_columns(tmp_path):
    report = find_duplicates(frame(event("s1", "started.signup", "p1", 0), event("b1", "Started Checkout", "p1", 3)))

    report.to_csv(tmp_path / "duplicates.csv")

    written = pd.read_csv(tmp_path / "duplicates.csv")
    assert list(written.columns) == CSV_COLUMNS
    assert written.to_dict("records")[0]["delay_seconds"] == 3.0


def greedy_reference(events: pd.DataFrame, window: dt.timedelta) -> set[tuple[str, str]]:
    """The specification, one candidate at a time."""
    rows = events.to_dict("records")
    candidates = []
    for s in rows:
        if s["metric"] not in DEFAULT_PAIRS:
            continue
        for b in rows:
            if b["metric"] == DEFAULT_PAIRS[s["metric"]] and b["profile_id"] == s["profile_id"]:
                delay = abs((b["datetime"] - s["datetime"]).total_seconds())
                if delay <= window.total_seconds():
                    candidates.append((delay, s["id"], b["id"]))
    used, chosen = set(), set()
    for _, s_id, b_id in sorted(candidates):
        if s_id not in used and b_id not in used:
            used |= {s_id, b_id}
            chosen.add((s_id, b_id))
    return chosen


@settings(max_examples=30, deadline=None)
@given(st.lists(
    st.tuples(st.sampled_from(["started.signup", "Started Checkout", "cancelled", "Cancelled Account"]),
              st.sampled_from(["p1", "p2"]), st.integers(0, 1500)),
    max_size=14,
))
def test_vectorised_matching_equals_the_one_by_one_greedy(raw):
    events = frame(*[event(f"e{i:02d}", metric, profile, seconds) for i, (metric, profile, seconds) in enumerate(raw)]) if raw else \
        pd.DataFrame(columns=["id", "metric", "profile_id", "email", "datetime"])

    report = find_duplicates(events)

    assert pairs_of(report) == greedy_reference(events, dt.timedelta(minutes=10))
    paired = set(report.pairs["server_event_id"]) | set(report.pairs["browser_event_id"])
    lonely = set(report.server_only["id"]) | set(report.browser_only["id"])
    assert paired.isdisjoint(lonely) and len(paired) == 2 * len(report.pairs)
    assert paired | lonely == set(events["id"])


def with_ids(*rows: dict) -> pd.DataFrame:
    """Events with the unique_id each side sends: ``log:<n>`` from the server, ``<customer>_<unix>`` from the browser."""
    events = frame(*rows)
    events["unique_id"] = [f"log:{i}" if metric in DEFAULT_PAIRS else f"{i}_1772445600" for i, metric in enumerate(events["metric"])]
    return events


def test_pairs_carry_both_sides_unique_ids_and_the_check_says_klaviyo_keeps_both():
    report = find_duplicates(with_ids(
        event("s1", "started.signup", "p1", 0), event("b1", "Started Checkout", "p1", 20),
        event("s2", "cancelled", "p1", 86400), event("b2", "Cancelled Account", "p1", 86430),
    ))

    assert report.pairs[["server_unique_id", "browser_unique_id"]].values.tolist() == [["log:0", "1_1772445600"], ["log:2", "3_1772445600"]]
    check = dedupe_check(report)
    assert check[["metric_pair", "pairs", "same_metric", "same_unique_id"]].to_dict("records") == [
        {"metric_pair": "started.signup / Started Checkout", "pairs": 1, "same_metric": False, "same_unique_id": 0},
        {"metric_pair": "cancelled / Cancelled Account", "pairs": 1, "same_metric": False, "same_unique_id": 0},
    ]
    row = check.iloc[0]
    assert row["server_sends"] == "started.signup with unique_id log:0"
    assert row["browser_sends"] == "Started Checkout with unique_id 1_1772445600"
    assert row["browser_should_send"].startswith("Started Checkout with unique_id log:0")
    assert row["server_should_send"].startswith("Started Checkout with unique_id log:0 (KL_SYNC_LOG_METRICS: started.signup -> Started Checkout)")
    sentences = dedupe_sentences(check)
    assert sentences[0] == ("0 of the 2 twin pairs carry the same unique_id on both sides, and 0 the same metric; Klaviyo deduplicates "
                            "only events of one metric with one unique_id, so it keeps both events of every pair: 2 duplicates in the account.")
    assert "not as a $event_id property" in sentences[1]


def test_the_check_counts_equal_ids_and_names_a_browser_event_without_one():
    events = with_ids(event("s1", "started.signup", "p1", 0), event("b1", "Started Checkout", "p1", 5),
                      event("s2", "cancelled", "p2", 0), event("b2", "Cancelled Account", "p2", 5))
    events.loc[1, "unique_id"] = "log:0"  # a browser that already sends the server's id, under its own metric
    events.loc[3, "unique_id"] = None

    check = dedupe_check(find_duplicates(events)).set_index("metric_pair")

    assert check.loc["started.signup / Started Checkout", "same_unique_id"] == 1
    assert check.loc["cancelled / Cancelled Account", "browser_sends"] == "Cancelled Account without a unique_id (Klaviyo uses the time)"
    assert dedupe_sentences(check.reset_index())[0].startswith("1 of the 2 twin pairs carries the same unique_id")


def test_twin_and_delay_sentences():
    report = find_duplicates(frame(
        event("s1", "started.signup", "p1", 0), event("b1", "Started Checkout", "p1", 10),
        event("s2", "started.signup", "p2", 0), event("b2", "Started Checkout", "p2", -30),
        event("s3", "started.signup", "p3", 0),
        event("b4", "Started Checkout", "p4", 0), event("b5", "Started Checkout", "p5", 0),
    ))

    assert twin_sentences(report) == [
        "2 of 3 started.signup events (67%) have a Started Checkout twin from the browser; 1 has none (the browser did not "
        "track it), and 2 Started Checkout events have no server twin (the store's log missed them).",
        "No cancelled or Cancelled Account events.",
    ]
    assert delay_sentences(report) == [
        "The browser's twin came a median 10 s before the server's time; 95% of twins within 29 s of it, the slowest 30 s apart. "
        "1 came before the server's time."
    ]
    assert delay_sentences(find_duplicates(frame(event("s1", "started.signup", "p1", 0)))) == ["No twins, so no delays."]
    nothing = find_duplicates(pd.DataFrame(columns=["id", "metric", "profile_id", "email", "datetime"]))
    assert dedupe_sentences(dedupe_check(nothing)) == ["No twin pairs: nothing for Klaviyo to deduplicate."]
