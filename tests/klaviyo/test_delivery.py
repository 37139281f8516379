"""Reading back what was sent (kl_sync.klaviyo.delivery): windows from the events' own times, the
match by unique_id and second (and, without a $event_id, by e-mail and second, one to one), and
suppressions from the profiles' subscriptions, against the emulator."""

from __future__ import annotations

import datetime as dt
import math

from kl_sync.emulator import EmulatorHandle
from kl_sync.klaviyo.client import KlaviyoClient
from kl_sync.klaviyo.delivery import (
    NEVER_SPLIT,
    ReadEvent,
    WantedEvent,
    find_events,
    find_suppressed,
    match_events,
    plan_windows,
    read_events,
    split_after,
)
from kl_sync.klaviyo.events import send_events
from kl_sync.klaviyo.reads import iter_event_pages
from kl_sync.klaviyo.suppressions import send_suppressions
from tests.klaviyo.factories import event

UTC = dt.UTC


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def _wanted(key: str, when: str, metric: str = "Placed Order") -> WantedEvent:
    return WantedEvent(key, metric, _at(when))


def test_windows_follow_the_events_own_times_and_split_at_long_gaps():
    wanted = [_wanted("late", "2023-01-01T10:00:00.5+00:00"), _wanted("a", "2026-01-01T09:00:00+00:00"),
              _wanted("c", "2026-01-01T09:10:00+00:00"), _wanted("b", "2026-01-01T04:05:59-05:00")]
    late, recent = plan_windows(wanted, split_after=dt.timedelta(days=1))
    assert (late.start, late.end, [w.key for w in late.events]) == (
        _at("2023-01-01T10:00:00+00:00"), _at("2023-01-01T10:00:01+00:00"), ["late"])
    assert (recent.start, recent.end, [w.key for w in recent.events]) == (
        _at("2026-01-01T09:00:00+00:00"), _at("2026-01-01T09:10:01+00:00"), ["a", "b", "c"])
    assert len(plan_windows(wanted)) == 1


def test_a_gap_is_worth_a_window_when_it_holds_more_than_a_page():
    first, last = _at("2026-01-01T00:00:00+00:00"), _at("2026-01-11T00:00:00+00:00")
    assert split_after(1000, first, last) == dt.timedelta(days=10)
    assert split_after(20_000, first, last) == dt.timedelta(hours=12)
    assert split_after(1, first, first) == NEVER_SPLIT


def _read(unique_id: str | None, when: str, email: str = "ann@example.com") -> ReadEvent:
    return ReadEvent(unique_id, math.floor(_at(when).timestamp()), email)


def test_a_row_matches_its_unique_id_at_its_second_and_nothing_else():
    wanted = [_wanted("log:1", "2026-01-01T09:00:00.9+00:00"), _wanted("log:2", "2026-01-01T09:00:00+00:00"),
              _wanted("log:3", "2026-01-01T09:00:05+00:00")]
    asked: list = []
    read = [
        _read("log:1", "2026-01-01T09:00:00+00:00"),  # truncated to its second, as Klaviyo keeps times
        _read("decoy", "2026-01-01T09:00:00+00:00"),  # the same profile and second, another event
        _read("log:3", "2026-01-01T09:00:06+00:00"),  # its unique_id at another time: not this row
    ]
    assert match_events(wanted, read, lambda keys: asked.append(keys) or {}) == {"log:1"}
    assert asked == []  # every event came back with its $event_id: no e-mail needed


def test_without_event_ids_rows_match_by_email_and_second_one_to_one():
    # Three order lines of one order: one profile, one metric, one second.
    wanted = [_wanted(f"order:1:item:{n}", "2026-01-01T09:00:00+00:00", "Ordered Product") for n in (1, 2, 3)]
    read = [_read(None, "2026-01-01T09:00:00+00:00", "ANN@example.com"), _read(None, "2026-01-01T09:00:00+00:00"),
            _read(None, "2026-01-01T09:00:01+00:00")]
    emails = {w.key: "ann@example.com" for w in wanted}
    assert len(match_events(wanted, read, lambda keys: {k: emails[k] for k in keys})) == 2
    assert match_events(wanted, read, lambda keys: {k: "bob@example.com" for k in keys}) == set()


def test_an_event_read_back_gives_its_event_id_second_and_profile_email(emu: EmulatorHandle, client: KlaviyoClient):
    send_events(client, [event(93_001, metric="Verify Read", time="2026-10-01T10:00:00.600+00:00")])
    pages = list(iter_event_pages(client, include="profile", fields={"event": "datetime,event_properties",
                                                                      "profile": "email"}))
    read = [e for e in read_events(pages) if e.unique_id == "order:93001:placed"]
    assert read == [ReadEvent("order:93001:placed", math.floor(_at("2026-10-01T10:00:00+00:00").timestamp()),
                              "customer93001@example.com")]
    # Were Klaviyo to return no $event_id, the event still reads, for the e-mail and second match.
    for page in pages:
        for resource in page["data"]:
            resource["attributes"]["event_properties"].pop("$event_id")
    assert {e.unique_id for e in read_events(pages)} == {None}


def _get_events_requests(emu: EmulatorHandle) -> list[dict]:
    return [e for e in emu.journal() if e["method"] == "GET" and e["path"].rstrip("/") == "/api/events"]


def test_a_few_late_events_never_read_the_history_between(emu: EmulatorHandle, client: KlaviyoClient):
    late = event(90_001, time="2023-03-01T10:00:00+00:00", metric="Verify Windows")
    recent = [event(90_100 + n, metric="Verify Windows", time=f"2026-10-01T10:{n:02d}:00+00:00") for n in range(20)]
    history = [event(91_000 + n, metric="Verify Windows", time=(_at("2024-01-01T00:00:00+00:00")
                     + dt.timedelta(hours=9 * n)).isoformat()) for n in range(2_000)]
    assert {o.status for o in send_events(client, [late, *recent, *history])} == {"sent"}
    wanted = [WantedEvent(e["unique_id"], e["metric"], _at(e["time"])) for e in (late, *recent)]
    # As the state knows it: 2,021 events of the metric reached Klaviyo between the first and the last.
    gap = split_after(2_021, wanted[0].time, wanted[-1].time)
    before = len(_get_events_requests(emu))
    assert find_events(client, wanted, split_after={"Verify Windows": gap}) == {w.key for w in wanted}
    reads = _get_events_requests(emu)[before:]
    # Two windows of one page each (the history between would have been three pages of 1,000).
    assert len(reads) == 2
    filters = [r["query"]["filter"] for r in reads]
    assert "greater-or-equal(datetime,2023-03-01T10:00:00+00:00)" in filters[0]
    assert "less-than(datetime,2023-03-01T10:00:01+00:00)" in filters[0]
    assert "greater-or-equal(datetime,2026-10-01T10:00:00+00:00)" in filters[1]
    assert all(r["query"]["page[size]"] == "1000" for r in reads)


def test_suppressions_are_read_from_the_profiles_subscriptions(emu: EmulatorHandle, client: KlaviyoClient):
    send_suppressions(client, ["gone-1@example.com"])
    send_events(client, [event(92_001, profile={"email": "here-1@example.com"})])
    assert find_suppressed(client, ["GONE-1@example.com", "here-1@example.com", "nobody-1@example.com"]) == {
        "gone-1@example.com"}
