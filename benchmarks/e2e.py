"""Benchmark 8: the initial sync as a user runs it, end to end, against the floor of its requests.

A store of C customers, L log rows and O orders (two lines each) is filled by the database itself
(:func:`benchmarks.stores.fill_store`); the Klaviyo emulator runs in its own process with Klaviyo's
real windows (scale 1), optionally ``--latency`` seconds of round trip. Timed: a fresh interpreter
running ``kl-sync sync --no-prefect --from-start`` over a fresh state database, from its start to
its exit — interpreter start, imports, GX's context, every step. The child
(``python -m benchmarks.e2e child``) is the ``kl-sync`` command's own ``main`` (what the console
script calls), then reports its peak RSS (``VmHWM``) and ends as the command does
(:func:`kl_sync.app.cli.exit_now`), so the same runs give benchmark 4: the most the run held at once,
bounded from above by the run's peak while its store-reading process lived plus that process's own
(``counts["store_process"]``), or the run's peak after it, whichever is larger (:class:`_WhileReading`).

**The floor** is the least time Klaviyo's windows allow for the requests the run made, endpoint by
endpoint (each has its own windows): :func:`benchmarks.send.requests_floor_seconds` of each
endpoint's count, the largest of them. It runs from the first request to the last, so whatever the
run does before its first request, and the last answer's round trip, count against it.

After each initial sync, the default command (nothing new) is timed from the shell: ``kl-sync sync``
(in-process, without Prefect, by default) as a subprocess of ``.venv/bin/kl-sync``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    BENCH_KEY,
    ROOT,
    BenchResult,
    Figure,
    emulator_process,
    fresh_dir,
    median,
    peak_rss_mb,
    sqlite_url,
)

#: The issue's store: 1,800 customers; 150k log rows and 18k orders queue 217,500 events (218 bulk
#: requests: one steady window of 150, then 68 more, so the floor is 66 s at Klaviyo's windows).
CUSTOMERS, LOG_ROWS, ORDERS = 1_800, 150_000, 18_000
#: Requests of one endpoint Klaviyo's steady window takes in any minute (bulk_create_events: 150/min).
STEADY_WINDOW = 150
_TS = re.compile(rb'^\{"ts":([0-9.]+),"method":"(\w+)","path":"([^"]*)"')


def store_size(scale: float) -> tuple[int, int, int]:
    """(customers, log rows, orders) of the issue's store times ``scale``."""
    return max(int(CUSTOMERS * scale), 100), int(LOG_ROWS * scale), int(ORDERS * scale)


def expected_events(log_rows: int, orders: int) -> int:
    """Events the store queues: one per log row; per order Placed Order and two Ordered Products, and
    a final status (Fulfilled or Cancelled) for every order but each fourth (still Placed)."""
    return log_rows + 3 * orders + (orders - orders // 4)


def run_floor(by_endpoint: dict[str, int]) -> tuple[float, str]:
    """The largest per-endpoint floor of these request counts at Klaviyo's windows, and its endpoint."""
    from benchmarks.send import requests_floor_seconds
    from kl_sync.klaviyo.limits import ENDPOINT_LIMITS

    floors = {name: requests_floor_seconds(n, endpoint=name, scale=1.0)
              for name, n in by_endpoint.items() if name in ENDPOINT_LIMITS}
    name = max(floors, key=lambda n: (floors[n], by_endpoint[n]))
    return floors[name], name


def journal_times(journal: Path) -> list[tuple[float, str, str]]:
    """(arrival time, method, path) of every request the emulator journaled, read off each line's
    head (the bodies, megabytes each, are not decoded)."""
    times = []
    with journal.open("rb") as lines:
        for line in lines:
            match = _TS.match(line)
            if match:
                times.append((float(match[1]), match[2].decode(), match[3].decode()))
    return times


def _store_processes() -> list[str]:
    """This process's children (every thread's) that are its store-reading process, by pid: its
    command line imports kl_sync.store_process (another child, ending first, must not count)."""
    pids: list[str] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        with contextlib.suppress(OSError):
            pids.extend((task / "children").read_text().split())
    return [pid for pid in pids if _is_store_process(pid)]


def _is_store_process(pid: str) -> bool:
    """Whether ``pid`` is a live store-reading process (a zombie's command line is empty)."""
    try:
        return b"kl_sync.store_process" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


class _WhileReading(threading.Thread):
    """This process's peak RSS while its store-reading process lived: ``VmHWM`` read once that child
    has gone (the high-water mark never falls, so read later it can only be larger: still a bound).
    The run's memory at any moment is at most this plus the store process's own peak while it lives,
    and at most this process's final peak after it: the larger of the two bounds what both held at once."""

    def __init__(self) -> None:
        super().__init__(name="bench-while-reading", daemon=True)
        self.peak_mb: float | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        # Once found, only that child's command line is read (empty once it has exited): walking every
        # thread's children each 20 ms cost the measured process ~2 % of its time.
        found: list[str] = []
        while not self.stopped.wait(0.02):
            if not found:
                found = _store_processes()
            elif not _is_store_process(found[0]):
                self.peak_mb = peak_rss_mb()
                return


def child(argv: list[str]) -> dict[str, Any]:
    """The ``kl-sync`` command's main with ``argv``, its JSON output, this process's peak RSS and its
    peak while its store-reading process lived (:class:`_WhileReading`)."""
    from kl_sync.app.cli import main

    watch = _WhileReading()
    watch.start()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    watch.stopped.set()
    watch.join()
    counts = json.loads(out.getvalue()) if code == 0 else None
    peak = peak_rss_mb()
    return {"exit_code": code, "counts": counts, "peak_rss_mb": peak,
            "peak_rss_mb_while_reading": peak if watch.peak_mb is None else watch.peak_mb,
            "output": out.getvalue()[-2000:]}


def _environment(folder: Path, base_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "KL_SYNC_STORE_URL": sqlite_url(folder / "store.db"),
        "KL_SYNC_STATE_URL": sqlite_url(folder / "state.db"),
        "KLAVIYO_API_KEY": BENCH_KEY,
        "KLAVIYO_BASE_URL": base_url,
    }


def initial_sync(folder: Path, base_url: str) -> dict[str, Any]:
    """One timed initial sync in a fresh interpreter, over a fresh state database."""
    (folder / "state.db").unlink(missing_ok=True)
    begun = time.time()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmarks.e2e", "child", "sync", "--no-prefect", "--from-start",
                           "--json"], cwd=folder, env=_environment(folder, base_url), capture_output=True, text=True,
                          timeout=3600)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"the initial sync failed ({done.returncode}):\n{done.stderr[-4000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["exit_code"] != 0:
        raise RuntimeError(f"kl-sync sync exited {report['exit_code']}:\n{done.stderr[-4000:]}")
    # CPU of the sync and every process it waited for (its store-reading process).
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"elapsed": elapsed, "begun": begun, "cpu_seconds": round(cpu, 1), **report}


def nothing_new(folder: Path, base_url: str) -> float:
    """``kl-sync sync`` from the shell after the initial sync: seconds to its exit."""
    command = [str(ROOT / ".venv" / "bin" / "kl-sync"), "sync", "--json"]
    if not Path(command[0]).exists():
        command = [sys.executable, "-m", "kl_sync.app.cli", *command[1:]]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=_environment(folder, base_url), capture_output=True, text=True,
                          timeout=600)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"the nothing-new sync failed ({done.returncode}):\n{done.stderr[-4000:]}")
    counts = json.loads(done.stdout)
    queued = sum(counts.get(step, {}).get("queued", 0) for step in ("parse", "orders", "customers", "suppress"))
    if queued or counts.get("send", {}).get("sent_events"):
        raise RuntimeError(f"the nothing-new sync queued {queued} rows")
    return elapsed


def _pacing(run: dict[str, Any]) -> str:
    if run["pacing_write"] is None:
        return ""
    return (f", request {run['pacing_write']} (the last request is due a minute after it: "
            f"Klaviyo's steady window) at {run['pacing_write_at']:.1f} s")


def _emulator_cpu(account: Path) -> float:
    """CPU seconds the emulator serving ``account`` has used so far (Linux: /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(account).encode() in cmdline.read_bytes() and b"kl_sync.emulator" in cmdline.read_bytes():
                fields = (cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
        except OSError:
            continue
    return 0.0


def one_run(folder: Path, *, latency: float, events: int, incremental: bool) -> dict[str, Any]:
    account = folder / f"klaviyo-{time.monotonic_ns()}"
    load = [round(x, 2) for x in os.getloadavg()]
    with emulator_process(account, rate_limits="real", latency=latency) as base_url:
        emulator_before = _emulator_cpu(account)
        run = initial_sync(folder, base_url)
        emulator_cpu = round(_emulator_cpu(account) - emulator_before, 1)
        incremental_seconds = [nothing_new(folder, base_url) for _ in range(3)] if incremental else []
    sent = run["counts"]["send"]["sent_events"]
    if sent != events:
        raise RuntimeError(f"sent {sent} of {events} events")
    by_endpoint = run["counts"]["http"]["by_endpoint"]
    floor, bound_by = run_floor(by_endpoint)
    arrivals = journal_times(account / "journal.jsonl")
    writes = [t for t, method, _ in arrivals if method == "POST"]
    begun = run["begun"]
    # Klaviyo's steady window slides (150 a minute): request j + 150 leaves no sooner than a minute
    # after request j, so the run ends at least a minute after request N - 151 (counting from 0).
    pacing = len(writes) - STEADY_WINDOW - 1 if len(writes) > STEADY_WINDOW else None
    # The store-reading steps' own process (KL_SYNC_STORE_PROCESS) ends once the store is read, before
    # the send does (at 217k events, at ~19 s of ~74): what both held at once is at most the run's peak
    # while it lived plus its own, or the run's peak after it (_WhileReading). The two whole peaks
    # added, as this figure read before, count memory the run never held at one moment.
    reader_peak = (run["counts"].get("store_process") or {}).get("peak_rss_mb", 0.0)
    at_once = max(run["peak_rss_mb_while_reading"] + reader_peak, run["peak_rss_mb"])
    return {
        "elapsed": run["elapsed"], "floor": floor, "floor_endpoint": bound_by, "by_endpoint": by_endpoint,
        "retries": run["counts"]["http"]["retries"], "peak_rss_mb": at_once,
        "peaks_added_mb": run["peak_rss_mb"] + reader_peak,
        "run_peak_rss_mb": run["peak_rss_mb"], "run_peak_rss_mb_while_reading": run["peak_rss_mb_while_reading"],
        "store_process_peak_rss_mb": reader_peak, "sent_events": sent,
        "first_write_at": round(writes[0] - begun, 3) if writes else None,
        "pacing_write": pacing, "pacing_write_at": round(writes[pacing] - begun, 3) if pacing is not None else None,
        "cpu_seconds": run["cpu_seconds"], "emulator_cpu_seconds": emulator_cpu,
        "last_write_at": round(writes[-1] - begun, 3) if writes else None,
        "incremental_seconds": incremental_seconds, "load_average_before": load,
    }


def run(scale: float = 1.0, *, latencies: tuple[float, ...] = (0.0, 0.25), repeat: int = 3,
        memory_scales: tuple[float, ...] = (0.25,)) -> BenchResult:
    """Three initial syncs per latency at ``scale`` × the issue's store (the first latency's runs
    also time the nothing-new sync), and one more per ``memory_scales`` for peak memory."""
    from benchmarks.stores import fill_store
    from kl_sync.db import make_engine

    result = BenchResult("e2e")
    details: dict[str, Any] = {"scale": scale, "runs": {}}
    stores: dict[float, tuple[Path, int, tuple[int, int, int]]] = {}

    def store(at: float) -> tuple[Path, int, tuple[int, int, int]]:
        if at not in stores:
            folder = fresh_dir(f"e2e-{at:g}")
            customers, log_rows, orders = store_size(at)
            engine = make_engine(sqlite_url(folder / "store.db"), sqlite_wal=False)
            fill_store(engine, customers=customers, log_rows=log_rows, orders=orders)
            engine.dispose()
            stores[at] = folder, expected_events(log_rows, orders), (customers, log_rows, orders)
        return stores[at]

    folder, events, (customers, log_rows, orders) = store(scale)
    size = f"{customers:,} customers, {events:,} events"
    incremental: list[float] = []
    peaks: list[tuple[int, float]] = []
    for index, latency in enumerate(latencies):
        runs = [one_run(folder, latency=latency, events=events, incremental=index == 0) for _ in range(repeat)]
        details["runs"][f"latency_{latency:g}"] = runs
        ratios = [r["elapsed"] / r["floor"] for r in runs]
        middle = sorted(runs, key=lambda r: r["elapsed"])[len(runs) // 2]
        goal = 1.05 if latency == 0 else 1.10
        label = "no latency" if latency == 0 else f"--latency {latency:g}"
        result.figures.append(Figure(
            "8 end to end", f"initial sync ÷ its requests' floor ({label})", median(ratios), "x", ("<=", goal),
            size, repeat,
            f"median {middle['elapsed']:.1f} s vs floor {middle['floor']:.1f} s ({middle['floor_endpoint']}: "
            f"{middle['by_endpoint'].get(middle['floor_endpoint'])} requests); first request at "
            f"{middle['first_write_at']:.1f} s{_pacing(middle)}; CPU {middle['cpu_seconds']:.0f} s kl-sync + "
            f"{middle['emulator_cpu_seconds']:.0f} s emulator; runs: {', '.join(f'{x:.2f}' for x in ratios)}×"))
        for r in runs:
            incremental.extend(r["incremental_seconds"])
        peaks.append((events, max(r["peak_rss_mb"] for r in runs)))
    if incremental:
        result.figures.append(Figure(
            "5 nothing new", "incremental sync, nothing new, from the shell", median(incremental), "s",
            ("<=", 5.0), "kl-sync sync after the initial sync", len(incremental),
            f"runs: {', '.join(f'{s:.1f}' for s in incremental)} s"))
    for at in memory_scales:
        small_folder, small_events, _ = store(at)
        small = one_run(small_folder, latency=0.0, events=small_events, incremental=False)
        details["runs"][f"memory_{at:g}"] = [small]
        peaks.append((small_events, small["peak_rss_mb"]))
    largest: dict[int, float] = {}
    for n, peak in peaks:
        largest[n] = max(peak, largest.get(n, 0.0))
    for n, peak in sorted(largest.items()):
        result.figures.append(Figure("4 memory", f"peak RSS, initial sync of {n:,} events", peak, "MB", ("<=", 400),
                                     f"{n:,} events", 1, "the most the kl-sync sync process and its store-reading process held at "
                                     "once: the run's VmHWM while the store process lived plus that one's, or the run's "
                                     "after it, whichever is larger; send included; the largest of its runs"))
    details["store"] = {"customers": customers, "log_rows": log_rows, "orders": orders, "events": events}
    result.details = details
    return result


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        print(json.dumps(child(sys.argv[2:]), default=str))
        from kl_sync.app.cli import exit_now

        exit_now(0)  # as the kl-sync command ends (its teardown skipped)
    else:
        result = run(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)
        for figure in result.figures:
            print(figure)
