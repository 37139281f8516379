"""validate_batch against the real suites: each expectation catches its bad row, good rows pass."""

from __future__ import annotations

import copy
import datetime as dt
import decimal
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kl_sync import quality
from kl_sync.constants import MAX_STRING_BYTES
from kl_sync.kinds import EVENT_KINDS, OUTBOX_KINDS
from kl_sync.payloads import UnflattenablePayload
from tests.quality import samples

GOOD_ROWS = 12
NOW = samples.NOW


def validate(kind: str, rows: Iterable[tuple[str, Any]], **options: Any) -> quality.QualityReport:
    options.setdefault("metric_names", samples.METRIC_NAMES[kind])
    options.setdefault("now", NOW)
    return quality.validate_batch(kind, rows, **options)


# ----------------------------------------------------------------------------- where things live per kind


def person(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The dict holding email (the event's profile, or the payload itself)."""
    return payload["profile"] if kind in EVENT_KINDS else payload


def props(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """The properties the 400 / 100 KB limits count: the event's, or the profile's."""
    return payload["properties"]


def status_holder(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return payload["profile"]["properties"] if kind in EVENT_KINDS else payload["properties"]


# ----------------------------------------------------------------------------- one bad row per expectation


@dataclass(frozen=True)
class Bad:
    label: str
    mutate: Callable[[str, dict[str, Any]], None]
    #: Rows that get the mutation (uniqueness needs two to break).
    copies: int = 1


def set_email(value: Any) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: person(kind, p).__setitem__("email", value)


def set_field(name: str, value: Any) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: p.__setitem__(name, value)


def drop_field(name: str) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: p.pop(name)


def drop_property(name: str) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: p["properties"].pop(name)


def set_item(name: str, value: Any) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: p["properties"]["Items"][0].__setitem__(name, value)


def drop_item_field(name: str) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: p["properties"]["Items"][0].pop(name)


def set_status(value: Any) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: status_holder(kind, p).__setitem__("Status", value)


def long_string(text: str) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: props(kind, p).__setitem__("Note", text)


def many_properties(count: int) -> Callable[[str, dict[str, Any]], None]:
    return lambda kind, p: props(kind, p).update({f"Extra{i}": i for i in range(count)})


def big_profile(kind: str, p: dict[str, Any]) -> None:
    # Three 40 KB strings: none too long by itself, 120 KB together.
    p["properties"].update({f"Blob{i}": "x" * 40_000 for i in range(3)})


def remove_email(kind: str, p: dict[str, Any]) -> None:
    person(kind, p).pop("email")


#: Klaviyo's "100KB" for one string, as every side of kl-sync reads it (100,000 bytes).
HUNDRED_KB = MAX_STRING_BYTES

CASES: dict[str, list[Bad]] = {
    "expect_column_values_to_not_be_null(email)": [
        Bad("absent", remove_email),
        Bad("null", set_email(None)),
    ],
    "expect_column_values_to_match_regex(email)": [
        Bad("no-domain", set_email("ana.smith1@")),
        Bad("at-spelled-out", set_email("ana1 at example.com")),
        Bad("double-at", set_email("ana@@example.com")),
        Bad("n-a", set_email("n/a")),
        Bad("untrimmed", set_email("  ana.smith@example.com ")),
        Bad("leading-junk-proves-caret", set_email("Ana ana@example.com")),
        Bad("trailing-junk", set_email("ana@example.com x")),
        Bad("trailing-newline-proves-backslash-z", set_email("ana@example.com\n")),
        Bad("international-domain-the-emulator-refuses", set_email("ana@bücher.de")),
        Bad("undotted-domain", set_email("ana@localhost")),
        Bad("not-a-string", set_email(12345)),
    ],
    "expect_column_values_to_not_be_null(metric)": [Bad("absent", drop_field("metric"))],
    "expect_column_values_to_be_in_set(metric)": [
        Bad("unconfigured", set_field("metric", "Started Checkout")),
        Bad("case", set_field("metric", "STARTED.SIGNUP")),
    ],
    "expect_column_values_to_not_be_null(time)": [Bad("absent", drop_field("time"))],
    "expect_column_values_to_match_regex(time)": [
        Bad("seed-format", set_field("time", "2024-05-15 12:35:32")),
        Bad("no-offset", set_field("time", "2024-05-15T12:35:32")),
        Bad("epoch", set_field("time", 1715791532)),
        Bad("date-only", set_field("time", "2024-05-15")),
        Bad("trailing-newline", set_field("time", "2024-05-15T12:35:32-04:00\n")),
    ],
    "expect_column_values_to_not_be_null(time_parsed)": [
        Bad("month-13", set_field("time", "2024-13-15T12:35:32-04:00")),
        Bad("feb-29-2023", set_field("time", "2023-02-29T00:00:00Z")),
    ],
    "expect_column_values_to_be_between(time_parsed)": [
        Bad("before-2000", set_field("time", "1999-12-31T23:59:59+00:00")),
        Bad("over-a-year-ahead", set_field("time", (NOW + dt.timedelta(days=366)).isoformat())),
    ],
    "expect_column_values_to_not_be_null(unique_id)": [Bad("absent", drop_field("unique_id"))],
    "expect_column_values_to_be_in_set(unique_id_type)": [
        Bad("number", set_field("unique_id", 123)),
        Bad("list", set_field("unique_id", ["log:1"])),
    ],
    "expect_column_value_lengths_to_be_between(unique_id)": [Bad("empty", set_field("unique_id", ""))],
    "expect_column_values_to_be_unique(unique_id)": [Bad("repeated", set_field("unique_id", "log:dup"), copies=2)],
    "expect_column_values_to_be_in_set(backfill_type)": [
        Bad("string", set_field("backfill", "true")),
        Bad("number", set_field("backfill", 1)),
    ],
    "expect_column_values_to_be_in_set(value_type)": [
        Bad("string", set_field("value", "47.95")),
        Bad("boolean", set_field("value", True)),
    ],
    "expect_column_values_to_be_between(value)": [Bad("negative", set_field("value", -0.01))],
    "expect_column_values_to_match_regex(value_currency)": [
        Bad("lower-case", set_field("value_currency", "usd")),
        Bad("name", set_field("value_currency", "US Dollar")),
    ],
    "expect_column_values_to_be_between(property_count)": [Bad("401", many_properties(401))],
    "expect_column_values_to_be_between(max_string_bytes)": [
        Bad("ascii", long_string("x" * (HUNDRED_KB + 1))),
        Bad("bytes-not-characters", long_string("é" * (HUNDRED_KB // 2 + 1))),
    ],
    "expect_column_values_to_be_in_set(status)": [
        Bad("unknown", set_status("Cancelled")),
        Bad("lower-case", set_status("active")),
    ],
    "expect_column_values_to_not_be_null(value)": [Bad("absent", drop_field("value"))],
    "expect_column_values_to_not_be_null(order_id)": [Bad("absent", drop_property("OrderId"))],
    "expect_column_values_to_not_be_null(product_id)": [Bad("absent", drop_property("ProductID"))],
    "expect_column_values_to_not_be_null(items_json)": [Bad("absent", drop_property("Items"))],
    "expect_column_values_to_match_json_schema(items_json)": [
        Bad("quantity-as-text", set_item("Quantity", "1")),
        Bad("no-product-name", drop_item_field("ProductName")),
        Bad("negative-price", set_item("ItemPrice", -1)),
        Bad("categories-not-a-list", set_item("ProductCategories", "Boxes")),
        Bad("items-not-a-list", lambda kind, p: p["properties"].__setitem__("Items", {"ProductID": "705"})),
        Bad("item-not-an-object", lambda kind, p: p["properties"].__setitem__("Items", ["705"])),
    ],
    "expect_column_values_to_be_between(payload_bytes)": [Bad("over-100kb", big_profile)],
}


def _suite_names(kind: str) -> list[str]:
    return [quality.expectation_name(e["type"], e["kwargs"]) for e in quality.load_suite_dict(kind)["expectations"]]


def _bad_row_cases() -> list[Any]:
    cases = []
    for kind in OUTBOX_KINDS:
        for name in _suite_names(kind):
            for bad in CASES.get(name) or [None]:
                label = bad.label if bad else "NO-CASE"
                cases.append(pytest.param(kind, name, bad, id=f"{kind}-{name}-{label}"))
    return cases


@dataclass(frozen=True)
class BadBatch:
    report: quality.QualityReport
    good_keys: list[str]
    #: (expectation name, case label) -> keys of the rows carrying that case.
    bad_keys: dict[tuple[str, str], list[str]]


@pytest.fixture(scope="module")
def bad_batches() -> dict[str, BadBatch]:
    """Per kind, one validated batch: good rows with every bad-row case of its suite spread among them.

    One GX run per kind instead of one per case (a run costs ~0.3 s whatever its size). Every case
    row is built from its own good payload, so no case can make another fail.
    """
    batches = {}
    for kind in OUTBOX_KINDS:
        good = samples.batch(kind, GOOD_ROWS)
        rows = list(good)
        bad_keys: dict[tuple[str, str], list[str]] = {}
        seed = 10_000
        for name in _suite_names(kind):
            for bad in CASES.get(name, []):
                for n in range(bad.copies):
                    payload = copy.deepcopy(samples.FACTORIES[kind](seed))
                    seed += 1
                    bad.mutate(kind, payload)
                    key = f"bad:{name}:{bad.label}:{n}"
                    bad_keys.setdefault((name, bad.label), []).append(key)
                    rows.insert(len(rows) // 2, (key, payload))
        batches[kind] = BadBatch(validate(kind, rows), [key for key, _ in good], bad_keys)
    return batches


@pytest.mark.parametrize(("kind", "name", "bad"), _bad_row_cases())
def test_bad_row_fails_naming_its_expectation(
    bad_batches: dict[str, BadBatch], kind: str, name: str, bad: Bad | None
) -> None:
    assert bad is not None, f"{kind}: {name} has no bad-row case; add one to CASES"
    batch = bad_batches[kind]
    for key in batch.bad_keys[(name, bad.label)]:
        assert name in batch.report.failures.get(key, []), batch.report.failures.get(key)


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_good_rows_beside_bad_ones_pass(bad_batches: dict[str, BadBatch], kind: str) -> None:
    batch = bad_batches[kind]
    assert batch.report.passed_keys == batch.good_keys
    assert set(batch.report.failures) == {key for keys in batch.bad_keys.values() for key in keys}


def test_a_lone_bad_row_fails_alone() -> None:
    """The same check as above without company: one bad row among good ones, nothing else failing."""
    good = samples.batch("ordered_product", GOOD_ROWS)
    payload = samples.ordered_product(99)
    payload["value"] = -1
    report = validate("ordered_product", [*good[:5], ("bad", payload), *good[5:]])
    assert report.failures == {"bad": ["expect_column_values_to_be_between(value)"]}
    assert report.passed_keys == [key for key, _ in good]
    assert report.by_expectation["expect_column_values_to_be_between(value)"] == 1


def test_the_rows_are_read_once_so_they_may_be_decoded_as_they_are_read() -> None:
    """The sender decodes each stored payload as the suite reads it, never the batch's all at once
    (benchmark 4): a generator of rows gets the report a list does, each row read once."""
    good = samples.batch("ordered_product", GOOD_ROWS)
    payload = samples.ordered_product(99)
    payload["value"] = -1
    rows = [*good[:5], ("bad", payload), *good[5:], ("broken", ["not", "an", "object"])]
    reads: list[str] = []

    def read_once():
        for key, row in rows:
            reads.append(key)
            yield key, row

    streamed, listed = validate("ordered_product", read_once()), validate("ordered_product", rows)
    assert reads == [key for key, _ in rows]
    assert (streamed.rows, streamed.failures, streamed.passed_keys, streamed.by_expectation) == \
        (listed.rows, listed.failures, listed.passed_keys, listed.by_expectation)
    assert streamed.rows == len(rows) and set(streamed.failures) == {"bad", "broken"}


# ----------------------------------------------------------------------------- clean batches


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_clean_realistic_batch_passes(kind: str) -> None:
    rows = samples.batch(kind, 300)
    report = validate(kind, rows)
    assert report.failures == {}
    assert report.passed_keys == [key for key, _ in rows]
    assert report.success
    assert set(report.by_expectation.values()) == {0}
    assert list(report.by_expectation) == [
        quality.expectation_name(e["type"], e["kwargs"]) for e in quality.load_suite_dict(kind)["expectations"]
    ]


def test_rows_on_every_boundary_pass() -> None:
    """Limits are inclusive where Klaviyo's are: no false rejects at the edges."""
    edge = []
    for i, change in enumerate([
        lambda p: p.__setitem__("time", "2000-01-01T00:00:00+00:00"),
        lambda p: p.__setitem__("time", (NOW + quality.TIME_HORIZON).isoformat()),
        lambda p: p.__setitem__("time", "2024-05-15T12:35:32.123456Z"),
        lambda p: p["properties"].__setitem__("Note", "x" * HUNDRED_KB),
        lambda p: p["properties"].__setitem__("Note", "é" * (HUNDRED_KB // 2)),
        lambda p: p["properties"].update({f"Extra{n}": n for n in range(400 - len(p["properties"]))}),
        lambda p: p.update(value=0, value_currency="EUR"),
        lambda p: p.update(value=12),
        lambda p: p["profile"].update(email="Ana.O'Brien+box@Mail.Example.CO.uk"),
        lambda p: p["profile"].update(email="ana@xn--bcher-kva.de"),
        lambda p: p["profile"]["properties"].update(Status=None),
        lambda p: p.update(profile={"email": "only.email@example.com"}),
        lambda p: p["properties"].update(Items=[]),
        lambda p: p["properties"]["Items"][0].update(ImageURL=None, ProductURL=None, ProductID=705),
        lambda p: p.pop("backfill"),
    ]):
        payload = samples.order_event(i)
        change(payload)
        edge.append((f"edge-{i}", payload))
    report = validate("order_event", edge)
    assert report.failures == {}


def test_items_repeated_across_rows_are_judged_row_by_row() -> None:
    """Items are checked once per distinct value; the verdict must reach every row holding it."""
    rows = samples.batch("order_event", 9)
    broken = []
    for n in range(3):
        payload = samples.order_event(100 + n * 3)  # the same Items list three times
        payload["properties"]["Items"][0]["Quantity"] = "two"
        broken.append((f"broken-{n}", payload))
    report = validate("order_event", rows + broken)
    assert sorted(report.failures) == ["broken-0", "broken-1", "broken-2"]
    assert report.by_expectation["expect_column_values_to_match_json_schema(items_json)"] == 3


# ----------------------------------------------------------------------------- payloads that cannot be rows


def _unflattenable_cases() -> list[Any]:
    def event(change: Callable[[dict[str, Any]], None]) -> Callable[[str], Any]:
        def make(kind: str) -> Any:
            payload = samples.FACTORIES[kind](0)
            change(payload)
            return payload
        return make

    def cycle(p: dict[str, Any]) -> None:
        p["properties"]["self"] = p["properties"]

    cases = [
        ("a-list", lambda kind: ["not", "an", "object"], "list"),
        ("a-string", lambda kind: "{\"email\": \"a@b.com\"}", "str"),
        ("null", lambda kind: None, "NoneType"),
    ]
    per_event = [
        ("properties-a-list", event(lambda p: p.__setitem__("properties", ["x"])), "properties is a list"),
        ("profile-a-string", event(lambda p: p.__setitem__("profile", "a@b.com")), "profile is a str"),
        ("profile-properties-a-list", event(lambda p: p["profile"].__setitem__("properties", [1])),
         "profile.properties"),
        ("decimal", event(lambda p: p["properties"].__setitem__("Amount", decimal.Decimal("1.5"))), "Decimal"),
        ("datetime", event(lambda p: p["properties"].__setitem__("When", dt.datetime(2024, 1, 1))), "datetime"),
        ("nan-value", event(lambda p: p.__setitem__("value", float("nan"))), "nan"),
        ("infinite-property", event(lambda p: p["properties"].__setitem__("x", float("inf"))), "inf"),
        ("cycle", event(cycle), "refers to itself"),
    ]
    params = [
        pytest.param(kind, make, clue, id=f"{kind}-{label}")
        for kinds, kind_cases in ((OUTBOX_KINDS, cases), (EVENT_KINDS, per_event))
        for kind in kinds
        for label, make, clue in kind_cases
    ]
    def profile_with_text_properties(kind: str) -> Any:
        return {"email": "a@b.com", "properties": "Active"}

    params.append(pytest.param("profile", profile_with_text_properties, "properties is a str",
                               id="profile-properties-a-string"))
    return params


@pytest.fixture(scope="module")
def unflattenable_reports() -> dict[str, tuple[quality.QualityReport, list[str]]]:
    """Per kind, one batch: four good rows and every broken payload of that kind, keyed by case id."""
    reports = {}
    for kind in OUTBOX_KINDS:
        good = samples.batch(kind, 4)
        broken = [(param.id, param.values[1](kind)) for param in _unflattenable_cases() if param.values[0] == kind]
        reports[kind] = (validate(kind, [good[0], *broken, *good[1:]]), [key for key, _ in good])
    return reports


@pytest.mark.parametrize(("kind", "make", "clue"), _unflattenable_cases())
def test_unflattenable_payload_fails_with_a_reason_and_spares_the_batch(
    unflattenable_reports: dict[str, tuple[quality.QualityReport, list[str]]],
    request: pytest.FixtureRequest,
    kind: str,
    make: Callable[[str], Any],
    clue: str,
) -> None:
    report, good_keys = unflattenable_reports[kind]
    key = request.node.callspec.id
    (reason,) = report.failures[key]
    assert reason.startswith(quality.UNFLATTENABLE + ": ")
    assert clue in reason
    assert report.passed_keys == good_keys
    assert report.by_expectation[quality.UNFLATTENABLE] == len(report.failures)


def test_batch_of_only_unflattenable_rows() -> None:
    report = validate("profile", [("a", []), ("b", 3)])
    assert sorted(report.failures) == ["a", "b"]
    assert report.passed_keys == []
    assert report.validations == ()


def test_empty_batch() -> None:
    report = validate("log_event", [])
    assert report.rows == 0 and report.failures == {} and report.passed_keys == []


# ----------------------------------------------------------------------------- run-time parameters and the report


def test_metric_names_are_a_run_time_parameter() -> None:
    rows = samples.batch("log_event", 12)
    assert validate("log_event", rows).success
    narrowed = validate("log_event", rows, metric_names=["started.signup", "contact.form"])
    kept = {key for key, payload in rows if payload["metric"] in {"started.signup", "contact.form"}}
    assert set(narrowed.passed_keys) == kept
    assert all(names == ["expect_column_values_to_be_in_set(metric)"] for names in narrowed.failures.values())
    assert len(narrowed.failures) == len(rows) - len(kept)


def test_now_bounds_the_future() -> None:
    payload = samples.log_event(1)
    payload["time"] = (NOW + dt.timedelta(days=200)).isoformat()
    assert validate("log_event", [("soon", payload)]).success
    earlier = validate("log_event", [("soon", payload)], now=NOW - dt.timedelta(days=200))
    assert earlier.failures == {"soon": ["expect_column_values_to_be_between(time_parsed)"]}


def test_bad_arguments_are_refused() -> None:
    rows = samples.batch("log_event", 1)
    with pytest.raises(ValueError, match="metric_names is empty"):
        quality.validate_batch("log_event", rows, metric_names=[])
    with pytest.raises(ValueError, match="timezone-aware"):
        quality.validate_batch("log_event", rows, metric_names=["x"], now=dt.datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="unknown outbox kind"):
        quality.validate_batch("sms", rows, metric_names=["x"])
    # Profiles and suppressions have no metric: an empty set is fine there.
    assert quality.validate_batch("suppression", samples.batch("suppression", 2), metric_names=()).success


def test_a_row_lists_every_failure_in_suite_order() -> None:
    payload = samples.order_event(5)
    payload["profile"]["email"] = None
    payload["value"] = -3
    payload["metric"] = "Refunded Order"
    rows = [("messy", payload), *samples.batch("order_event", 3)]
    report = validate("order_event", rows)
    assert report.failures == {
        "messy": [
            "expect_column_values_to_not_be_null(email)",
            "expect_column_values_to_be_in_set(metric)",
            "expect_column_values_to_be_between(value)",
        ]
    }
    assert report.reason("messy") == "; ".join(report.failures["messy"])
    assert report.failed_keys == ["messy"]


def test_summary_rows_count_every_check() -> None:
    rows = samples.batch("suppression", 6)
    rows[1] = ("suppress:bad1", {"email": "nope"})
    rows[3] = ("suppress:bad2", {"email": "also nope"})
    rows[4] = ("suppress:odd", "not an object")
    summary = validate("suppression", rows).summary_rows()
    assert summary == [
        {"kind": "suppression", "check": "expect_column_values_to_not_be_null(email)", "failed_rows": 0,
         "example_keys": ""},
        {"kind": "suppression", "check": "expect_column_values_to_match_regex(email)", "failed_rows": 2,
         "example_keys": "suppress:bad1, suppress:bad2"},
        {"kind": "suppression", "check": quality.UNFLATTENABLE, "failed_rows": 1, "example_keys": "suppress:odd"},
    ]


def test_validation_does_not_touch_the_payloads() -> None:
    rows = samples.batch("order_event", 5) + [("odd", {"metric": 3, "properties": {"Items": {"a": 1}}})]
    before = copy.deepcopy(rows)
    validate("order_event", rows)
    assert rows == before


def test_flatten_batch_columns() -> None:
    payload = samples.order_event(2)
    payload["properties"]["Note"] = "né"  # 3 bytes, but the longest string is elsewhere
    batch = quality.flatten_batch("order_event", [("order:2:fulfilled", payload)])
    row = batch.frame.iloc[0]
    assert row["key"] == "order:2:fulfilled"
    assert row["email"] == payload["profile"]["email"]
    assert row["time_parsed"] == dt.datetime.fromisoformat(payload["time"])
    assert row["value"] == payload["value"] and row["value_type"] == "number"
    assert row["unique_id_type"] == "string" and row["backfill_type"] == "boolean"
    assert row["property_count"] == len(payload["properties"])
    assert json.loads(row["items_json"]) == payload["properties"]["Items"]
    longest = max(len(s.encode()) for s in _strings(payload))
    assert row["max_string_bytes"] == longest


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_the_frame_is_what_a_dict_per_row_would_make(kind: str) -> None:
    """The frame is built column by column (no dict per row kept: benchmark 4's memory); it is the
    frame pandas makes from one dict of columns per row, dtypes and all."""
    import pandas as pd

    from kl_sync.kinds import kind_of
    from kl_sync.quality.flatten import scan_payload

    rows = samples.batch(kind, GOOD_ROWS)
    batch = quality.flatten_batch(kind, [*rows[:3], ("not-an-object", 7), *rows[3:]])
    records = [{**kind_of(kind).columns(payload), "key": key, "max_string_bytes": scan_payload(payload)}
               for key, payload in rows]
    expected = pd.DataFrame.from_records(records)
    if "time_text" in expected:
        expected["time_parsed"] = pd.to_datetime(expected.pop("time_text"), utc=True, format="ISO8601", errors="coerce")
    if "value" in expected:
        expected["value"] = expected["value"].astype("float64")
    pd.testing.assert_frame_equal(batch.frame, expected)
    assert batch.keys == [key for key, _ in rows[:3]] + ["not-an-object"] + [key for key, _ in rows[3:]]



@pytest.mark.parametrize(("payload", "answer"), [
    ({"ab": "ü", "c": None, "d": 7, "e": True}, 2),  # 'ü' is 2 bytes
    ({"k": {1: "xyz", None: 0, 2.5: "é" * 2}}, 4),  # keys JSON turns into text are walked as values
    ({"a": [1.5, {"b": "cccc"}, ("tuple", "sub" * 3)]}, 9),
    ({"x": {"y": {"z": "\ud800" * 2}}}, 6),  # a lone surrogate: 3 bytes, as sent with surrogatepass
    ({"many": [{"k": index} for index in range(60_000)]}, 4),  # walked past the cycle check: no cycle
    ({"v": decimal.Decimal(1), float("nan"): 1}, "Decimal"),  # values before keys, as ever
    ({"v": [1, float("inf")], "w": {"x": decimal.Decimal(1)}}, "Decimal"),
    ({"k": {float("nan"): "v"}}, "nan, which JSON cannot carry"),
])
def test_scan_payload_measures_keys_and_values_and_refuses_in_walk_order(payload: dict, answer: Any) -> None:
    if isinstance(answer, int):
        assert quality.scan_payload(payload) == answer
    else:
        with pytest.raises(UnflattenablePayload, match=answer):
            quality.scan_payload(payload)

def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# ----------------------------------------------------------------------------- broken suites fail loudly


@pytest.fixture
def suites_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "expectations"
    shutil.copytree(quality.SUITES_DIR, folder)
    return folder


def _add_expectation(folder: Path, kind: str, expectation: dict[str, Any]) -> None:
    path = folder / f"{kind}.json"
    body = json.loads(path.read_text())
    body["expectations"].append(expectation)
    path.write_text(json.dumps(body))


def test_expectation_on_a_column_the_flattener_lacks_raises(suites_copy: Path) -> None:
    _add_expectation(suites_copy, "suppression", {
        "type": "expect_column_values_to_not_be_null", "kwargs": {"column": "nickname"},
    })
    with pytest.raises(quality.QualitySuiteError, match="nickname"):
        quality.validate_batch("suppression", samples.batch("suppression", 2), metric_names=(),
                               suites_dir=suites_copy)


def test_table_level_expectation_is_refused(suites_copy: Path) -> None:
    _add_expectation(suites_copy, "profile", {
        "type": "expect_table_row_count_to_be_between", "kwargs": {"max_value": 5},
    })
    with pytest.raises(quality.QualitySuiteError, match="not a column map expectation"):
        quality.validate_batch("profile", samples.batch("profile", 2), metric_names=(), suites_dir=suites_copy)


def test_missing_suite_is_refused(suites_copy: Path) -> None:
    (suites_copy / "ordered_product.json").unlink()
    with pytest.raises(quality.QualitySuiteError, match="no expectation suite for outbox kind 'ordered_product'"):
        quality.validate_batch("profile", samples.batch("profile", 2), metric_names=(), suites_dir=suites_copy)


def test_tightened_suite_takes_effect(suites_copy: Path) -> None:
    """Adding an expectation is a JSON edit: no code change needed."""
    _add_expectation(suites_copy, "suppression", {
        "type": "expect_column_values_to_not_match_regex",
        "kwargs": {"column": "email", "regex": "@mailinator\\.com\\Z"},
    })
    rows = [*samples.batch("suppression", 3), ("throwaway", {"email": "x@mailinator.com"})]
    report = quality.validate_batch("suppression", rows, metric_names=(), suites_dir=suites_copy)
    assert report.failures == {"throwaway": ["expect_column_values_to_not_match_regex(email)"]}


# ----------------------------------------------------------------------------- data docs


def test_build_data_docs_writes_a_site(tmp_path: Path) -> None:
    orders = samples.batch("order_event", 6)
    orders[2][1]["properties"]["Items"][0]["Quantity"] = "one"
    reports = [validate("order_event", orders), validate("log_event", samples.batch("log_event", 4)),
               validate("log_event", samples.batch("log_event", 3, start=4))]

    index = quality.build_data_docs(reports, tmp_path / "docs")

    assert index == (tmp_path / "docs" / "index.html").resolve()
    assert index.is_file()
    pages = {path.relative_to(index.parent).parts[:2] for path in index.parent.rglob("*.html")}
    assert ("validations", "order_event") in pages
    assert ("validations", "order_event_distinct_items_json") in pages
    assert ("validations", "log_event") in pages
    assert ("expectations", "profile.html") in pages
    assert len(list((index.parent / "validations" / "log_event").rglob("*.html"))) == 2  # one page a result
    html = index.read_text()
    assert "order_event" in html and "log_event" in html



def test_gx_does_not_fingerprint_the_frames_it_validates() -> None:
    """The frame's md5 fingerprint (a third of a 20k-row validation) is left out of the batch markers."""
    report = validate("order_event", samples.batch("order_event", 6))
    for result in report.validations:
        assert "ge_load_time" in result.meta["batch_markers"]
        assert "pandas_data_fingerprint" not in result.meta["batch_markers"]


# ----------------------------------------------------------------------------- odd values never break a batch

ODD_VALUES: list[Any] = [None, 0, -1, 1.5, True, "", " ", "x", "é" * 3, [], {}, [1, "a"], {"a": {"b": None}}, 10**30]
FIELDS: dict[str, list[tuple[str, ...]]] = {
    "event": [("metric",), ("time",), ("unique_id",), ("value",), ("value_currency",), ("backfill",),
              ("properties",), ("profile",), ("profile", "email"), ("profile", "properties"),
              ("profile", "properties", "Status"), ("properties", "Items"), ("properties", "OrderId"),
              ("properties", "ProductID")],
    "profile": [("email",), ("first_name",), ("properties",), ("properties", "Status")],
    "suppression": [("email",)],
    "unsuppression": [("email",)],
}


@pytest.mark.parametrize("kind", OUTBOX_KINDS)
def test_odd_values_anywhere_never_break_a_batch(kind: str) -> None:
    """Whatever JSON value sits in whatever field, each row gets a verdict and the batch completes."""
    rows = []
    for path in FIELDS["event" if kind in EVENT_KINDS else kind]:
        for n, value in enumerate(ODD_VALUES):
            payload = samples.FACTORIES[kind](len(rows))
            holder = payload
            for step in path[:-1]:
                holder = holder[step]
            holder[path[-1]] = copy.deepcopy(value)
            rows.append((f"{'.'.join(path)}={n}", payload))
    report = validate(kind, rows)
    assert set(report.failures) | set(report.passed_keys) == {key for key, _ in rows}
    assert not set(report.failures) & set(report.passed_keys)
    assert report.rows == len(rows)


def test_failure_that_names_no_rows_is_refused(suites_copy: Path) -> None:
    """An aggregate verdict (here: the whole column's dtype) cannot be turned into per-row outcomes."""
    _add_expectation(suites_copy, "suppression", {
        "type": "expect_column_values_to_be_in_type_list", "kwargs": {"column": "email", "type_list": ["int"]},
    })
    with pytest.raises(quality.QualitySuiteError, match="without naming the rows"):
        quality.validate_batch("suppression", samples.batch("suppression", 2), metric_names=(),
                               suites_dir=suites_copy)
