"""Server events and their browser twins: the seed's "these may result in duplicates".

The server sends ``started.signup`` and ``cancelled`` from the store's log; the pages track
``Started Checkout`` and ``Cancelled Account`` for the same actions. :func:`find_duplicates` pairs
each server event with the browser event of its pair metric for the same profile that is nearest
in time within a window, each event in at most one pair. That is the greedy matching over candidate
pairs sorted by |delay| (ties broken by the events' ids, so the result is deterministic), computed
in rounds of pandas merges rather than a loop over events: in each round every candidate that is
the nearest remaining one for both of its events is taken, and candidates touching a taken event are
dropped. Taking all such "mutually nearest" candidates at once gives exactly what the one-by-one
greedy gives, since the greedy would take each of them before anything that competes with it.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from kl_sync.analysis.text import count, pct, verb
from kl_sync.onsite.snippets import CANCELLED_ACCOUNT, STARTED_CHECKOUT
from kl_sync.settings import DEFAULT_LOG_METRICS

#: Log types whose actions the store's pages also track in the browser, and each one's browser metric.
STARTED_SIGNUP, CANCELLED = "started.signup", "cancelled"
BROWSER_TWINS: Mapping[str, str] = {STARTED_SIGNUP: STARTED_CHECKOUT, CANCELLED: CANCELLED_ACCOUNT}


def server_browser_pairs(log_metrics: Mapping[str, str] = DEFAULT_LOG_METRICS) -> dict[str, str]:
    """Server metric -> its browser twin's metric; the server's names are the settings' log metrics
    (``KL_SYNC_LOG_METRICS``), so a renamed metric is paired under its new name."""
    return {log_metrics[log_type]: browser for log_type, browser in BROWSER_TWINS.items() if log_type in log_metrics}


DEFAULT_PAIRS: Mapping[str, str] = server_browser_pairs()
DEFAULT_WINDOW = dt.timedelta(minutes=10)

PAIR_COLUMNS = [
    "server_event_id",
    "browser_event_id",
    "email",
    "metric_pair",
    "delay_seconds",
    "server_time",
    "browser_time",
    "week",
    "server_unique_id",
    "browser_unique_id",
]
#: The columns of ``duplicates.csv``.
CSV_COLUMNS = ["server_event_id", "browser_event_id", "email", "metric_pair", "delay_seconds"]
RATE_COLUMNS = [
    "server_events",
    "browser_events",
    "pairs",
    "server_only",
    "browser_only",
    "server_paired_rate",
    "browser_paired_rate",
]


def metric_pair_name(server_metric: str, browser_metric: str) -> str:
    return f"{server_metric} / {browser_metric}"


def iso_week(times: pd.Series) -> pd.Series:
    """``YYYY-Www`` of each time (ISO 8601 weeks, in the times' own zone)."""
    parts = times.dt.isocalendar()
    return parts["year"].astype(str) + "-W" + parts["week"].astype(str).str.zfill(2)


def week_start(times: pd.Series) -> pd.Series:
    """The Monday 00:00 (naive, in the times' own zone) that starts each time's ISO week."""
    local = times.dt.tz_localize(None) if times.dt.tz is not None else times
    return local.dt.to_period("W-SUN").dt.start_time


@dataclass(frozen=True)
class DuplicateReport:
    #: One row per twin: PAIR_COLUMNS; ``delay_seconds`` is browser time minus server time.
    pairs: pd.DataFrame
    #: Server events of a paired metric with no twin (the events' columns plus ``metric_pair``).
    server_only: pd.DataFrame
    #: Browser events of a paired metric with no twin.
    browser_only: pd.DataFrame
    #: Per metric pair: RATE_COLUMNS.
    rates: pd.DataFrame
    #: Per metric pair and ISO week (of the server event, or of the lone event): ``week``,
    #: ``week_start`` and RATE_COLUMNS.
    weekly: pd.DataFrame
    #: Per metric pair and calendar month (UTC), every month of the span, empty ones with 0 events
    #: and no rate: ``month`` (a Period) and RATE_COLUMNS.
    monthly: pd.DataFrame

    def to_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the pairs as ``duplicates.csv`` (CSV_COLUMNS)."""
        self.pairs[CSV_COLUMNS].to_csv(path, index=False)


def _prepared(events: pd.DataFrame) -> pd.DataFrame:
    """Events with a matching key (profile id, else the folded e-mail) and UTC times."""
    required = {"id", "metric", "datetime"}
    missing = required - set(events.columns)
    if missing:
        raise ValueError(f"events lack columns {sorted(missing)}")
    frame = events.drop_duplicates("id").copy()
    frame["datetime"] = pd.to_datetime(frame["datetime"], utc=True)
    email = frame["email"] if "email" in frame else pd.Series(pd.NA, index=frame.index, dtype="object")
    email = email.astype("string").str.strip().str.lower()
    profile = frame["profile_id"].astype("string") if "profile_id" in frame else pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["_key"] = ("profile:" + profile).fillna("email:" + email)
    frame["_email"] = email
    frame["_unique_id"] = frame["unique_id"].astype("string") if "unique_id" in frame else pd.Series(pd.NA, index=frame.index, dtype="string")
    return frame[frame["_key"].notna()]


def _nearest_pairs(candidates: pd.DataFrame) -> pd.DataFrame:
    """The greedy nearest-first matching of ``candidates`` (server_id, browser_id, abs_delay)."""
    ordered = candidates.sort_values(["abs_delay", "server_id", "browser_id"], kind="mergesort").reset_index(drop=True)
    ordered["rank"] = range(len(ordered))
    taken = []
    remaining = ordered
    while not remaining.empty:
        best_for_server = remaining.groupby("server_id")["rank"].transform("min")
        best_for_browser = remaining.groupby("browser_id")["rank"].transform("min")
        mutual = remaining[(remaining["rank"] == best_for_server) & (remaining["rank"] == best_for_browser)]
        taken.append(mutual)
        remaining = remaining[
            ~remaining["server_id"].isin(mutual["server_id"]) & ~remaining["browser_id"].isin(mutual["browser_id"])
        ]
    if not taken:
        return ordered.iloc[0:0]
    return pd.concat(taken).sort_values("rank")


def _rate_table(counts: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Rates from a frame with one row per outcome (``outcome`` in pair / server_only / browser_only)."""
    table = counts.groupby([*by, "outcome"]).size().unstack("outcome", fill_value=0)
    table = table.reindex(columns=["pair", "server_only", "browser_only"], fill_value=0)
    table = table.rename(columns={"pair": "pairs"})
    table["server_events"] = table["pairs"] + table["server_only"]
    table["browser_events"] = table["pairs"] + table["browser_only"]
    table["server_paired_rate"] = (table["pairs"] / table["server_events"].where(table["server_events"] > 0)).astype(float)
    table["browser_paired_rate"] = (table["pairs"] / table["browser_events"].where(table["browser_events"] > 0)).astype(float)
    table.columns.name = None
    return table[RATE_COLUMNS].reset_index()


def find_duplicates(
    events: pd.DataFrame,
    pairs: Mapping[str, str] = DEFAULT_PAIRS,
    window: dt.timedelta = DEFAULT_WINDOW,
) -> DuplicateReport:
    """Pair server events with their browser twins (see the module's docstring).

    ``events`` has at least ``id``, ``metric`` and ``datetime``, and ``profile_id`` and/or ``email``
    (the reads' ``events_frame`` columns). ``pairs`` maps a server metric to its browser metric; a
    twin is an event of that browser metric for the same profile at most ``window`` before or after.
    """
    frame = _prepared(events)
    # A browser metric shared by two server metrics is counted under the first pair.
    browser_pair = {browser: metric_pair_name(server, browser) for server, browser in reversed(list(pairs.items()))}
    server = frame[frame["metric"].isin(list(pairs))].copy()
    server["metric_pair"] = [metric_pair_name(m, pairs[m]) for m in server["metric"]]
    server["browser_metric"] = server["metric"].map(pairs)
    browser = frame[frame["metric"].isin(list(pairs.values()))].copy()
    browser["metric_pair"] = browser["metric"].map(browser_pair)

    candidates = server[["id", "_key", "_email", "_unique_id", "browser_metric", "metric_pair", "datetime"]].merge(
        browser[["id", "_key", "_email", "_unique_id", "metric", "datetime"]],
        left_on=["_key", "browser_metric"],
        right_on=["_key", "metric"],
        suffixes=("_server", "_browser"),
    )
    candidates = candidates.rename(columns={"id_server": "server_id", "id_browser": "browser_id"})
    candidates["delay"] = candidates["datetime_browser"] - candidates["datetime_server"]
    candidates = candidates[candidates["delay"].abs() <= pd.Timedelta(window)]
    candidates["abs_delay"] = candidates["delay"].abs()
    chosen = _nearest_pairs(candidates)

    twins = _twins(chosen)
    original = list(events.columns)
    server_only = _unpaired(server, twins["server_event_id"], original)
    browser_only = _unpaired(browser, twins["browser_event_id"], original)
    outcomes = _outcomes(twins, server_only, browser_only)
    all_pairs = pd.DataFrame({"metric_pair": [metric_pair_name(s, b) for s, b in pairs.items()]})
    rates = all_pairs.merge(_rate_table(outcomes, ["metric_pair"]), on="metric_pair", how="left")
    for column in ("server_events", "browser_events", "pairs", "server_only", "browser_only"):
        rates[column] = rates[column].fillna(0).astype(int)
    weekly = _rate_table(outcomes, ["metric_pair", "week", "week_start"])
    weekly = weekly.sort_values(["metric_pair", "week"]).reset_index(drop=True)
    return DuplicateReport(twins, server_only, browser_only, rates, weekly, _monthly(outcomes, list(all_pairs["metric_pair"])))


def _twins(chosen: pd.DataFrame) -> pd.DataFrame:
    """The chosen candidate pairs as :data:`PAIR_COLUMNS` rows, oldest server event first."""
    twins = pd.DataFrame(
        {
            "server_event_id": chosen["server_id"].to_numpy(),
            "browser_event_id": chosen["browser_id"].to_numpy(),
            "email": chosen["_email_server"].fillna(chosen["_email_browser"]).to_numpy(),
            "metric_pair": chosen["metric_pair"].to_numpy(),
            "delay_seconds": chosen["delay"].dt.total_seconds().to_numpy(dtype=float),
            "server_time": chosen["datetime_server"].to_numpy(),
            "browser_time": chosen["datetime_browser"].to_numpy(),
            "server_unique_id": chosen["_unique_id_server"].to_numpy(),
            "browser_unique_id": chosen["_unique_id_browser"].to_numpy(),
        }
    )
    twins["server_time"] = pd.to_datetime(twins["server_time"], utc=True)
    twins["browser_time"] = pd.to_datetime(twins["browser_time"], utc=True)
    twins["week"] = iso_week(twins["server_time"]) if len(twins) else pd.Series(dtype="string")
    return twins[PAIR_COLUMNS].sort_values(["server_time", "server_event_id"], kind="mergesort").reset_index(drop=True)


def _unpaired(side: pd.DataFrame, paired_ids: pd.Series, columns: list[str]) -> pd.DataFrame:
    """The events of one side that found no twin, with the input's columns and their metric pair."""
    unpaired = side[~side["id"].isin(paired_ids)][[*columns, "metric_pair"]].reset_index(drop=True)
    unpaired["datetime"] = pd.to_datetime(unpaired["datetime"], utc=True)
    return unpaired


def _outcomes(twins: pd.DataFrame, server_only: pd.DataFrame, browser_only: pd.DataFrame) -> pd.DataFrame:
    """One row per pair or unpaired event: its metric pair, time, outcome, week and week start."""
    outcomes = pd.concat(
        [
            pd.DataFrame({"metric_pair": twins["metric_pair"], "time": twins["server_time"], "outcome": "pair"}),
            pd.DataFrame({"metric_pair": server_only["metric_pair"], "time": server_only["datetime"], "outcome": "server_only"}),
            pd.DataFrame({"metric_pair": browser_only["metric_pair"], "time": browser_only["datetime"], "outcome": "browser_only"}),
        ],
        ignore_index=True,
    )
    outcomes["time"] = pd.to_datetime(outcomes["time"], utc=True)
    outcomes["week"] = iso_week(outcomes["time"]) if len(outcomes) else pd.Series(dtype="string")
    outcomes["week_start"] = week_start(outcomes["time"])
    return outcomes


def _monthly(outcomes: pd.DataFrame, metric_pairs: list[str]) -> pd.DataFrame:
    """RATE_COLUMNS per metric pair and month, over every month from the first event to the last."""
    columns = ["metric_pair", "month", *RATE_COLUMNS]
    if outcomes.empty:
        return pd.DataFrame(columns=columns)
    outcomes = outcomes.assign(month=outcomes["time"].dt.tz_convert("UTC").dt.tz_localize(None).dt.to_period("M"))
    months = pd.period_range(outcomes["month"].min(), outcomes["month"].max(), freq="M")
    grid = pd.MultiIndex.from_product([metric_pairs, months], names=["metric_pair", "month"]).to_frame(index=False)
    table = grid.merge(_rate_table(outcomes, ["metric_pair", "month"]), on=["metric_pair", "month"], how="left")
    for column in ("server_events", "browser_events", "pairs", "server_only", "browser_only"):
        table[column] = table[column].fillna(0).astype(int)
    return table[columns]


#: The server's ``unique_id`` for a log event: the outbox key of the store's log row.
SERVER_UNIQUE_ID = "log:<id of the store's system_log row>"


def _same(left: pd.Series, right: pd.Series) -> pd.Series:
    return (left.astype("string") == right.astype("string")).fillna(False).astype(bool)


def dedupe_check(report: DuplicateReport, pairs: Mapping[str, str] = DEFAULT_PAIRS) -> pd.DataFrame:
    """Per metric pair: do the twins carry the same ``unique_id``, and what would each side have to
    send for Klaviyo to keep one event of each pair.

    Klaviyo keeps one event per profile, metric and ``unique_id``: twins collapse only when both
    sides send the same metric name AND the same ``unique_id`` (a pair that did is not in the
    account to be found: only its first event is). A browser ``$event_id`` property is not a
    ``unique_id``: walkerOS #709 measured that it does not dedupe against a server one.
    Columns: ``metric_pair``, ``pairs``, ``same_metric``, ``same_unique_id`` (pairs whose ids are
    equal), an example of what each side sends today, and what each would have to send.
    """
    rows = []
    for server_metric, browser_metric in pairs.items():
        name = metric_pair_name(server_metric, browser_metric)
        twins = report.pairs[report.pairs["metric_pair"] == name]
        example = twins.iloc[0] if len(twins) else None
        server_id = str(example["server_unique_id"]) if example is not None else SERVER_UNIQUE_ID
        browser_id = example["browser_unique_id"] if example is not None else None
        rows.append({
            "metric_pair": name,
            "pairs": len(twins),
            "same_metric": server_metric == browser_metric,
            "same_unique_id": int(_same(twins["server_unique_id"], twins["browser_unique_id"]).sum()),
            "server_sends": f"{server_metric} with unique_id {server_id}",
            "browser_sends": (f"{browser_metric} with unique_id {browser_id}" if pd.notna(browser_id)
                              else f"{browser_metric} without a unique_id (Klaviyo uses the time)"),
            "server_should_send": f"{browser_metric} with unique_id {server_id} (KL_SYNC_LOG_METRICS: {server_metric} -> {browser_metric})",
            "browser_should_send": f"{browser_metric} with unique_id {server_id} (the log row the page's form created)",
        })
    return pd.DataFrame(rows)


def twin_sentences(report: DuplicateReport) -> list[str]:
    """Per metric pair, how many server events have a browser twin and how many are alone."""
    sentences = []
    for row in report.rates.itertuples():
        server_metric, browser_metric = row.metric_pair.split(" / ", 1)
        if not row.server_events and not row.browser_events:
            sentences.append(f"No {server_metric} or {browser_metric} events.")
            continue
        sentences.append(
            f"{row.pairs} of {count(row.server_events, server_metric + ' event')} ({pct(row.pairs, row.server_events)}) "
            f"{verb(row.pairs, 'has', 'have')} a {browser_metric} twin from the browser; {row.server_only} "
            f"{verb(row.server_only, 'has', 'have')} none (the browser did not track {verb(row.server_only, 'it', 'them')}), and "
            f"{count(row.browser_only, browser_metric + ' event')} {verb(row.browser_only, 'has', 'have')} no server twin "
            f"(the store's log missed {verb(row.browser_only, 'it', 'them')})."
        )
    return sentences


def dedupe_sentences(check: pd.DataFrame) -> list[str]:
    """Why Klaviyo keeps both events of each pair, and the fix."""
    pairs = int(check["pairs"].sum())
    if not pairs:
        return ["No twin pairs: nothing for Klaviyo to deduplicate."]
    same_id = int(check["same_unique_id"].sum())
    same_metric = int(check.loc[check["same_metric"], "pairs"].sum())
    sentences = [
        f"{same_id} of the {count(pairs, 'twin pair')} {verb(same_id, 'carries', 'carry')} the same unique_id on both sides, "
        f"and {same_metric} the same metric; Klaviyo deduplicates only events of one metric with one unique_id, so it keeps "
        f"both events of every pair: {count(pairs, 'duplicate')} in the account."
    ]
    sentences.append(
        "For Klaviyo to keep one event of each pair, both sides must send the same metric name with the same unique_id: "
        f"the server keeps its {SERVER_UNIQUE_ID} under the browser's metric name, and the page after the form prints that "
        "id for the snippet to send as the event's unique_id (not as a $event_id property)."
    )
    return sentences


def delay_sentences(report: DuplicateReport) -> list[str]:
    """How long after the server's time the browser's twin came."""
    if report.pairs.empty:
        return ["No twins, so no delays."]
    delays = report.pairs["delay_seconds"]
    early = int((delays < 0).sum())
    median = delays.median()
    text = (f"The browser's twin came a median {abs(median):.0f} s {'after' if median >= 0 else 'before'} the server's time; "
            "95% of twins within "
            f"{delays.abs().quantile(0.95):.0f} s of it, the slowest {delays.abs().max():.0f} s apart.")
    return [text + (f" {early} came before the server's time." if early else "")]
