"""The notebooks' figures: titled, labelled, counts on integer axes, gaps (not lines) where a period
has nothing to show. Each function returns a matplotlib ``Figure`` (not registered with pyplot, so
a notebook shows it once, where it is the cell's value); the sentences under each figure come from
the analysis modules.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from kl_sync.analysis.drift import ProfileDrift
from kl_sync.analysis.duplicates import DuplicateReport
from kl_sync.analysis.missed import SignupFunnel, stalled_table

#: At most this many month labels on an axis (every n-th month is labelled beyond it).
MAX_MONTH_LABELS = 12


def _integer_counts(axis) -> None:  # type: ignore[no-untyped-def]
    axis.set_major_locator(MaxNLocator(integer=True))


def _month_ticks(ax: Axes, months: pd.Series) -> None:
    labels = [f"{month:%Y-%m}" for month in months]
    step = max(1, math.ceil(len(labels) / MAX_MONTH_LABELS))
    ax.set_xticks(range(len(labels))[::step], labels[::step], rotation=45, ha="right")
    ax.set_xlim(-0.6, max(len(labels), 1) - 0.4)


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_signup_funnel(funnel: SignupFunnel, window: str) -> Figure:
    """Started -> completed -> still active, overall (with % of started) and per month of the last
    start (bars, and the completion rate as a line broken where a month had no starts)."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    overall, monthly = fig.subplots(1, 2, width_ratios=[1, 3])
    stages = funnel.stages
    bars = overall.bar(stages["stage"], stages["people"], color=["C0", "C2", "C1"])
    labels = [f"{n}" if pd.isna(share) else f"{n}\n({share:.0%})" for n, share in zip(stages["people"], stages["share"], strict=True)]
    overall.bar_label(bars, labels=labels, padding=2)
    overall.set_title(f"Sign-up funnel {window}")
    overall.set_xlabel("stage")
    overall.set_ylabel("people")
    overall.margins(y=0.2)
    _integer_counts(overall.yaxis)

    table = funnel.monthly
    if table.empty:
        _empty(monthly, "no sign-up starts")
    else:
        x = np.arange(len(table))
        width = 0.27
        for offset, column, label, color in ((-width, "started", "started", "C0"), (0, "completed", "completed", "C2"),
                                             (width, "still_active", "still active", "C1")):
            monthly.bar(x + offset, table[column], width, label=label, color=color)
        _month_ticks(monthly, table["month"])
        _integer_counts(monthly.yaxis)
        monthly.set_ylabel("people")
        rate = monthly.twinx()
        # NaN where nobody started: matplotlib leaves a gap instead of drawing across the month.
        rate.plot(x, table["completed_rate"] * 100, color="black", marker="o", label="completed (% of started)")
        rate.set_ylim(0, 135)  # the same headroom as the bars
        rate.set_yticks(range(0, 101, 20))
        rate.yaxis.set_major_formatter(PercentFormatter())
        rate.set_ylabel("completed (% of started)")
        # Headroom above the bars for the legend.
        monthly.set_ylim(0, max(int(table["started"].max()), 1) * 1.35)
        handles, names = monthly.get_legend_handles_labels()
        more, more_names = rate.get_legend_handles_labels()
        monthly.legend(handles + more, names + more_names, loc="upper left", ncols=4, fontsize="small")
    monthly.set_title("By month of the last start")
    monthly.set_xlabel("month (UTC)")
    return fig


def plot_stalled(missed: pd.DataFrame) -> Figure:
    """Missed signups per step where they stalled."""
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    ax = fig.subplots()
    table = stalled_table(missed)
    if table.empty:
        _empty(ax, "no missed signups")
    else:
        bars = ax.barh(table["stalled_at"], table["people"], color="C3")
        ax.bar_label(bars, padding=2)
        ax.invert_yaxis()
        _integer_counts(ax.xaxis)
        ax.margins(x=0.15)
    ax.set_title("Where the missed signups stalled")
    ax.set_xlabel("people")
    ax.set_ylabel("stalled")
    return fig


def plot_twin_shares(report: DuplicateReport) -> Figure:
    """Per server metric, the share of its events with a browser twin (bars labelled "n of N")."""
    fig = Figure(figsize=(9, 2.8), layout="constrained")
    ax = fig.subplots()
    rates = report.rates
    shares = rates["server_paired_rate"].fillna(0) * 100
    bars = ax.barh(rates["metric_pair"], shares, color="C0")
    ax.bar_label(bars, labels=[f"{p} of {n}" for p, n in zip(rates["pairs"], rates["server_events"], strict=True)], padding=3)
    ax.invert_yaxis()
    ax.set_xlim(0, 115)
    ax.xaxis.set_major_formatter(PercentFormatter())
    ax.set_title("Server events with a browser twin")
    ax.set_xlabel("share of the server metric's events")
    ax.set_ylabel("server / browser metric")
    return fig


def plot_twins_by_month(report: DuplicateReport) -> Figure:
    """Per metric pair and month: twins, server-only and browser-only events, stacked."""
    pairs = list(report.rates["metric_pair"])
    fig = Figure(figsize=(12, 3.2 * max(len(pairs), 1)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(max(len(pairs), 1), 1, squeeze=False)[:, 0])
    for ax, pair in zip(axes, pairs or ["(no metric pairs)"], strict=True):
        table = report.monthly[report.monthly["metric_pair"] == pair]
        if table.empty or not (table["server_events"].sum() + table["browser_events"].sum()):
            _empty(ax, "no events")
        else:
            x = np.arange(len(table))
            bottom = np.zeros(len(table))
            for column, label, color in (("pairs", "twins (a duplicate each)", "C3"), ("server_only", "server only", "C0"),
                                         ("browser_only", "browser only", "C2")):
                ax.bar(x, table[column], bottom=bottom, label=label, color=color)
                bottom += table[column].to_numpy()
            _month_ticks(ax, table["month"])
            _integer_counts(ax.yaxis)
            ax.legend(loc="upper left", fontsize="small")
        ax.set_title(pair)
        ax.set_ylabel("events per month")
        ax.set_xlabel("month (UTC)")
    fig.suptitle("Twins and lone events by month")
    return fig


def plot_twin_delays(report: DuplicateReport) -> Figure:
    """Per metric pair, how long after the server's time the browser's twin came (log-spaced bins)."""
    pairs = list(report.rates["metric_pair"])
    fig = Figure(figsize=(12, 3.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, max(len(pairs), 1), squeeze=False)[0])
    for i, (ax, pair) in enumerate(zip(axes, pairs or ["(no metric pairs)"], strict=True)):
        delays = report.pairs.loc[report.pairs["metric_pair"] == pair, "delay_seconds"].abs().clip(lower=1)
        if delays.empty:
            _empty(ax, "no twins")
        else:
            bins = np.logspace(0, math.log10(max(delays.max(), 10)), 30)
            ax.hist(delays, bins=bins, color=f"C{i}")
            ax.set_xscale("log")
            _integer_counts(ax.yaxis)
        ax.set_title(pair)
        ax.set_xlabel("browser time minus server time (seconds, log scale)")
        ax.set_ylabel("twin pairs")
    fig.suptitle("Delay between twins")
    return fig


def plot_stale_fields(drift: ProfileDrift) -> Figure:
    """Stale Klaviyo profiles per compared property."""
    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(drift.by_field["property"], drift.by_field["profiles"], color="C1")
    ax.bar_label(bars, padding=2)
    _integer_counts(ax.yaxis)
    ax.margins(y=0.2)
    ax.set_title(f"Klaviyo profiles whose property differs from the store (of {len(drift.compared)})")
    ax.set_xlabel("profile property")
    ax.set_ylabel("stale profiles")
    return fig
