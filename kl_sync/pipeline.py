"""One sync run: open the databases, run the steps in order, record the run. Flows and the app layer
call these functions; each Prefect task wraps exactly one of them.

The pipeline only sequences steps: it is given its Klaviyo client (or a way to open one for the send
step) by the app layer (:mod:`kl_sync.app.clients`), which alone decides between Klaviyo and the
local emulator.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, nullcontext, suppress
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from kl_sync.db import in_database_call
from kl_sync.kinds import OPERATIONS, metric_names
from kl_sync.klaviyo.reads import check_key
from kl_sync.normalize import naive_utc
from kl_sync.progress import step_progress
from kl_sync.settings import Settings, SettingsError
from kl_sync.state.dead_letters import letters_report, list_dead_letters
from kl_sync.state.delivery import delivery_counts
from kl_sync.failures import EXIT_INTERRUPTED, EXIT_KLAVIYO_UNREACHABLE, EXIT_TERMINATED, Failure
from kl_sync.state.locks import STORE_LOCK, release_lock, release_locks_of, renew_lock, take_lock
from kl_sync.state.migrate import open_state
from kl_sync.state.outbox import iter_pending, pending_count, release_run_leases, renew_leases, waiting_for_retry
from kl_sync.state.runs import abandon_dead_runs, finish_run, heartbeat, start_run
from kl_sync.steps.common import StepResult
from kl_sync.steps.consent import consent_report, read_consent
from kl_sync.steps.customers import CUSTOMERS
from kl_sync.steps.orders import ORDERS
from kl_sync.steps.parse import PARSE
from kl_sync.steps.send import OutboxFeed, preview_outbox, quality_validator, send_outbox
from kl_sync.steps.stream import StreamStep
from kl_sync.steps.suppress import SUPPRESS
from kl_sync.steps.verify import verify_outbox
from kl_sync.store.readers import store_engine

#: The store-reading steps, declared streams, in pipeline order; send and verify follow them.
STORE_STEPS: dict[str, StreamStep] = {step.name: step for step in (PARSE, ORDERS, CUSTOMERS, SUPPRESS)}
#: The steps that talk to Klaviyo, after the store-reading ones: they share the run's client.
CLIENT_STEPS = ("send", "verify", "consent")
STEPS = (*STORE_STEPS, *CLIENT_STEPS)


def step_for_key(key: str) -> StreamStep:
    """The step whose rows have this outbox or dead-letter key (``log:…``, ``order:…``, ``suppress:…``):
    the one that can rebuild it from the store."""
    prefix = key.partition(":")[0]
    for step in STORE_STEPS.values():
        if step.key_prefix == prefix:
            return step
    raise ValueError(f"no step writes keys like {key!r} (known: {', '.join(s.key_prefix + ':' for s in STORE_STEPS.values())})")


def parse_steps(text: str | Sequence[str] | None) -> list[str]:
    """``"parse,send"`` → ``["parse", "send"]`` in pipeline order; unknown names are an error."""
    if text is None:
        return list(STEPS)
    names = [s.strip() for s in (text.split(",") if isinstance(text, str) else text) if s.strip()]
    unknown = [n for n in names if n not in STEPS]
    if unknown:
        raise ValueError(f"unknown step(s) {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    return [s for s in STEPS if s in names]


def quality_rows(result: StepResult) -> list[dict[str, Any]]:
    """The send step's validation as table rows: suite, rows validated, expectation, rows failed."""
    rows = []
    for kind, tally in sorted(result.details.get("quality", {}).items()):
        failures = sorted(tally["failures"].items()) or [("(every expectation passed)", 0)]
        rows.extend({"suite": kind, "rows": tally["rows"], "expectation": check, "failed": n} for check, n in failures)
    return rows


class Heartbeat:
    """A daemon thread saying, every ``every`` seconds, that this run is alive: the run's
    ``heartbeat_at``, the leases of its claims (each renewed for ``lease_seconds``) and the store
    lock while it holds it. A run that dies stops beating, so what it held is free within one lease
    period: its rows' leases run out, its lock and its ``running`` row are taken over by the next run."""

    def __init__(self, state: Engine, run_id: str, every: float, lease_seconds: int) -> None:
        self._state = state
        self._run_id = run_id
        self._every = every
        self._lease_seconds = lease_seconds
        self._stop = threading.Event()
        self.locks: set[str] = set()
        self._thread = threading.Thread(target=self._beat, name=f"kl-sync-heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._every + 5)

    def beat(self) -> None:
        with self._state.begin() as conn:
            heartbeat(conn, self._run_id)
            renew_leases(conn, self._run_id, lease_seconds=self._lease_seconds)
        for name in list(self.locks):
            if not renew_lock(self._state, name, self._run_id):
                self.locks.discard(name)

    def _beat(self) -> None:
        from sqlalchemy.exc import DBAPIError

        while not self._stop.wait(self._every):
            # A state database away for a moment must not kill the run: the next beat tries again
            # (and if it stays away, the run's own writes fail and say so).
            with suppress(DBAPIError):
                self.beat()


def heartbeat_every(settings: Settings) -> float:
    """How often a run beats: four times per lease, so one missed beat never lets anything expire."""
    return max(1.0, settings.lease_seconds / 4)


def stale_after(settings: Settings) -> dt.timedelta:
    """How old a heartbeat says its run is dead: one lease period (four missed beats). By then the
    leases it stopped renewing have run out, so other workers already treat its rows as free; its
    store lock and its ``running`` row follow them, so one rerun after a kill waits one lease at most."""
    return dt.timedelta(seconds=settings.lease_seconds)


class Interrupted(BaseException):
    """A signal stopped the run (a BaseException, like KeyboardInterrupt: no ``except Exception``
    on the way may swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Interruption:
    """What SIGTERM or SIGINT asks of a run (installed as their handler by :mod:`kl_sync.app.run`).

    A signal sets :attr:`event` (the sender, on its own thread, stops claiming, lets the requests in
    flight be answered and recorded, and hands back every row it had not posted) and raises
    :class:`Interrupted` in the main thread at once, except:

    - while the main thread holds a database connection (:func:`kl_sync.db.in_database_call`):
      raising inside a transaction, or the pool's bookkeeping, left SQLite's write lock held by a
      connection nothing closed, and the run hung recording its end (about 1 in 8 signalled runs);
    - while :attr:`hold` is set (the run is being recorded as started or finished);
    - while :attr:`defer` is set (the sender runs in the main thread and stops itself cleanly), for
      the first signal: a second one (the operator insists) raises.

    A deferred signal is acted on at the run's next stop point (:meth:`check`: after each chunk a
    store-reading or verify step commits, between steps)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None
        self.defer = False
        self.hold = False

    def __call__(self, signum: int, _frame: Any = None) -> None:
        again = self.signum is not None
        self.signum = self.signum or signum
        self.event.set()
        if self.hold or in_database_call() or (self.defer and not again):
            return
        raise Interrupted(signum)

    def check(self) -> None:
        if self.event.is_set():
            raise Interrupted(self.signum or 15)


@dataclass
class SyncRun:
    settings: Settings
    store: Engine
    state: Engine
    run_id: str
    steps: list[str]
    from_start: bool = False
    dry_run: bool = False
    #: The verify step checks only rows sent since then (naive UTC); None: every row due.
    verify_since: dt.datetime | None = None
    results: dict[str, StepResult] = field(default_factory=dict)
    client_stats: dict[str, Any] = field(default_factory=dict)
    heartbeat: Heartbeat | None = None
    interruption: Interruption | None = None
    #: Why this run skips the store-reading steps (another run holds the store lock); None: it
    #: holds the lock, or has not needed it yet.
    store_skipped: str | None = None
    #: Called after each chunk a store-reading step commits (the sender running beside them).
    on_commit: Callable[[], None] | None = None
    #: The process the store-reading steps ran in (:mod:`kl_sync.store_process`): its pid and peak
    #: memory; None when they ran in this one.
    store_process: dict[str, Any] | None = None

    def counts(self) -> dict[str, Any]:
        counts: dict[str, Any] = {}
        for name, result in self.results.items():
            counts[name] = result.as_dict()
        if self.client_stats:
            counts["http"] = self.client_stats
        if self.store_process:
            counts["store_process"] = self.store_process
        return counts


class DatabaseUnreachable(SettingsError):
    """The store or the state database cannot be reached; the message names the setting and the
    driver's reason in one line (never the URL's password)."""


def _one_line_reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    return text[:300] or type(orig).__name__


def _connectable(engine: Engine, setting: str) -> Engine:
    from sqlalchemy.exc import DBAPIError

    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise DatabaseUnreachable(f"{setting}: cannot connect: {_one_line_reason(exc)}") from None
    return engine


def start_sync(
    settings: Settings,
    *,
    steps: Sequence[str] | None = None,
    from_start: bool = False,
    dry_run: bool = False,
    verify_since: dt.datetime | None = None,
    interruption: Interruption | None = None,
) -> SyncRun:
    """Open both databases (migrating the state DB) and record the run as started. With
    ``interruption``, signals are held from the recording on (:attr:`Interruption.hold`): the
    caller's ``try`` lets go of them, so a run recorded as started is always recorded as ended.

    Raises :class:`DatabaseUnreachable` naming ``KL_SYNC_STORE_URL`` or ``KL_SYNC_STATE_URL`` when one
    cannot be reached, before anything is read or written."""
    from sqlalchemy.exc import DBAPIError

    store = _connectable(store_engine(settings.store_url), "KL_SYNC_STORE_URL")
    try:
        state = open_state(settings.state_url)
    except DBAPIError as exc:
        raise DatabaseUnreachable(f"KL_SYNC_STATE_URL: cannot connect: {_one_line_reason(exc)}") from None
    chosen = parse_steps(steps)
    abandon_dead(state, settings)
    if interruption is not None:
        interruption.hold = True
    with state.begin() as conn:
        run_id = start_run(conn, steps=chosen, dry_run=dry_run)
    since = None if verify_since is None else naive_utc(verify_since)
    run = SyncRun(settings, store, state, run_id, chosen, from_start, dry_run, since)
    run.heartbeat = Heartbeat(state, run_id, heartbeat_every(settings), settings.lease_seconds)
    run.heartbeat.start()
    return run


def abandon_dead(state: Engine, settings: Settings) -> list[str]:
    """Record ``abandoned`` the runs whose heartbeat stopped (killed), and free what they held."""
    with state.begin() as conn:
        dead = abandon_dead_runs(conn, silent_for=stale_after(settings))
        for run_id in dead:
            release_run_leases(conn, run_id)
    release_locks_of(state, dead)
    return dead


def finish_sync(run: SyncRun, *, error: BaseException | None = None, status: str | None = None) -> dict[str, Any]:
    """Record the run's outcome (ok, failed, or ``status``), hand back any row its claims still hold,
    let go of the store lock, and record dead runs met meanwhile as abandoned."""
    status = status or ("failed" if error else "ok")
    if run.heartbeat is not None:
        run.heartbeat.stop()
    try:
        with run.state.begin() as conn:
            release_run_leases(conn, run.run_id)
            finish_run(conn, run.run_id, status=status, counts=run.counts(), error=str(error) if error else None)
    finally:
        release_lock(run.state, STORE_LOCK, run.run_id)
    from sqlalchemy.exc import DBAPIError

    with suppress(DBAPIError):  # housekeeping for others: never what fails this run
        abandon_dead(run.state, run.settings)
    return run.counts()


def _store_skipped(run: SyncRun) -> str | None:
    """Take the store lock for this run's store-reading steps (once); the line saying why they are
    skipped when another live run holds it. Two runs reading the store at once would only queue the
    same keys twice over (the upserts make that harmless), at twice the cost on the store."""
    if run.store_skipped is not None or (run.heartbeat is not None and STORE_LOCK in run.heartbeat.locks):
        return run.store_skipped
    holder = take_lock(run.state, STORE_LOCK, run.run_id, stale_after=stale_after(run.settings))
    if holder is None:
        if run.heartbeat is not None:
            run.heartbeat.locks.add(STORE_LOCK)
        return None
    run.store_skipped = (f"store steps skipped: run {holder.run_id} holds the store lock since "
                         f"{holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC")
    return run.store_skipped


def run_step(run: SyncRun, step: str) -> StepResult:
    """Run one of the store-reading steps for this run (send needs a client: :func:`run_send`); a
    step another run is running already is skipped (its result says so, under ``skipped``)."""
    declared = STORE_STEPS[step]
    skipped = _store_skipped(run)
    if skipped is not None:
        result = run.results[step] = StepResult(step, details={"skipped": skipped})
        return result
    with step_progress(f"{declared.name}: {declared.progress_label}") as progress:
        result = declared.run(run.store, run.state, run.settings, from_start=run.from_start, run_id=run.run_id,
                              progress=_after_commit(progress, run.on_commit, _stop_point(run)))
    run.results[step] = result
    return result


def _stop_point(run: SyncRun) -> Callable[[], None] | None:
    """Raises :class:`Interrupted` if a signal came (:meth:`Interruption.check`): for the points
    between a step's transactions, where stopping loses nothing."""
    return None if run.interruption is None else run.interruption.check


def _after_commit(progress: Callable[[int], None], *after: Callable[[], None] | None) -> Callable[[int], None]:
    """The step's progress callback (called once per committed chunk, outside any transaction),
    then each of ``after`` (the sender beside the steps; the stop point)."""
    calls = [call for call in after if call is not None]
    if not calls:
        return progress

    def advance(n: int) -> None:
        progress(n)
        for call in calls:
            call()

    return advance


def _send(run: SyncRun, client: Any, *, validate: bool, owner: str | None, total: int | None,
          feed: OutboxFeed | None = None, warm_up: bool = False) -> StepResult:
    """The sender over this run's outbox, with the run's settings."""
    s = run.settings
    with step_progress("send: outbox rows", total=total) as progress:
        return send_outbox(
            run.state,
            client,
            retries=s.retry.outbox,
            batch_size=s.send_batch_size,
            lease_seconds=s.lease_seconds,
            validate=quality_validator(metric_names(s)) if validate else None,
            run_id=run.run_id,
            owner=owner or run.run_id,  # the heartbeat renews the leases of the run's claims by it
            progress=progress,
            in_flight=s.send_in_flight,
            feed=feed,
            stop=None if run.interruption is None else run.interruption.event,
            warm_up=warm_up,
        )


def run_send(
    run: SyncRun,
    client: Any,
    *,
    validate: bool = True,
    owner: str | None = None,
    feed: OutboxFeed | None = None,
    warm_up: bool = False,
) -> StepResult:
    """Send the outbox (or, in a dry run, preview what would be sent and send nothing); with ``feed``,
    while the store-reading steps still queue rows (:func:`send_while_reading`). ``warm_up``: load
    the quality suites before the first claim (:func:`~kl_sync.steps.send.send_outbox`)."""
    if run.dry_run:
        result = StepResult("send", details={"dry_run": True, "preview": preview_outbox(run.state, limit=20)})
        run.results["send"] = result
        return result
    pending = None
    if feed is None:
        with run.state.connect() as conn:
            pending = pending_count(conn)
    result = _send(run, client, validate=validate, owner=owner, total=pending, feed=feed, warm_up=warm_up)
    result.details["http_requests"] = client.stats.as_dict()
    run.results["send"] = result
    return result


def run_verify(run: SyncRun, client: Any, *, owner: str | None = None) -> StepResult:
    """Read back what was sent at least ``KL_SYNC_VERIFY_AFTER`` ago, send again what Klaviyo still
    does not show after ``KL_SYNC_VERIFY_GRACE``, dead-letter what never appeared after
    ``KL_SYNC_VERIFY_MAX_SENDS`` sends. A dry run verifies nothing (a re-send is a write)."""
    if run.dry_run:
        result = StepResult("verify", details={"dry_run": True})
        run.results["verify"] = result
        return result
    s = run.settings
    before = client.stats.as_dict()
    with step_progress("verify: sent rows") as progress:
        result = verify_outbox(
            run.state,
            client,
            verify_after=s.verify_after,
            grace=s.verify_grace,
            max_sends=s.verify_max_sends,
            resend=lambda: _send(run, client, validate=True, owner=owner, total=None),
            since=run.verify_since,
            run_id=run.run_id,
            progress=_after_commit(progress, _stop_point(run)),
        )
    result.details["http_requests"] = _requests_since(before, client.stats.as_dict())
    run.results["verify"] = result
    return result


def _requests_since(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The client's counts between two of its snapshots (what one step asked of Klaviyo)."""
    by_endpoint = {name: n - before["by_endpoint"].get(name, 0) for name, n in after["by_endpoint"].items()}
    return {"requests": after["requests"] - before["requests"], "retries": after["retries"] - before["retries"],
            "by_endpoint": {name: n for name, n in by_endpoint.items() if n}}


def run_consent(run: SyncRun, client: Any, *, owner: str | None = None) -> StepResult:
    """Read back whom Klaviyo suppressed since the last read (the other direction, read only) and
    count the customers the store believes subscribed whom Klaviyo cannot e-mail."""
    result = read_consent(run.state, client)
    result.details["subscribed_but_blocked"] = len(consent_report(run.state, run.store))
    run.results["consent"] = result
    return result


def sends_while_reading(steps: Sequence[str], *, dry_run: bool) -> bool:
    """Whether a run of ``steps`` sends while its store-reading steps read (:func:`send_while_reading`):
    when it has both, and sends for real. ``kl-sync sync`` and the Prefect flow decide by this."""
    return any(step in STORE_STEPS for step in steps) and "send" in steps and not dry_run


class _SenderFailed(Exception):
    """The sender running beside the store steps stopped with an error: the steps stop too."""


def send_while_reading(run: SyncRun, client: Any, steps: Sequence[str], *, owner: str | None = None) -> StepResult:
    """Run the store-reading ``steps`` and the sender beside them, on its own thread.

    The sender claims whatever the steps have committed so far (the first bulk request leaves once
    the first chunk is queued), waits for their next commit when it is ahead of them, and drains the
    outbox once they are done: it never waits for a step to finish. Nothing the steps guarantee
    changes (each chunk is one transaction, cursors only move forward) and the sender claims only
    committed rows, under its lease, as when it runs after them.

    The steps run in a process of their own (:mod:`kl_sync.store_process`, ``KL_SYNC_STORE_PROCESS``,
    the default): the run is bound by the interpreter lock, and two processes use both cores
    (benchmarks/README.md, benchmark 8). They run in this thread instead when that setting is off,
    when a database is in memory (another process cannot see it), or when another run holds the
    store lock (the steps are then skipped). If the steps fail (or the run is interrupted) the sender
    stops at its next batch, recording what was answered and handing back what it claimed and did
    not send; if the sender fails, the steps stop after their current chunk and the sender's error
    is raised."""
    feed = OutboxFeed()
    in_process = _reads_in_process(run)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kl-sync-send") as pool:
        sending = pool.submit(run_send, run, client, owner=owner, feed=feed,
                              warm_up=in_process and _reads_from_the_start(run))
        try:
            if in_process:
                _read_in_process(run, steps, feed, sending)
            else:
                _read_in_thread(run, steps, feed, sending)
        except _SenderFailed:
            pass
        except BaseException:
            feed.cancel()
            raise
        finally:
            run.on_commit = None
            feed.close()
        try:
            return sending.result()
        except BaseException:
            # An error raised here while the sender drains the outbox: in a run without an
            # Interruption (the Prefect flow: Ctrl-C, a cancellation) it is the only stop. The sender
            # stops at its next batch, handing back what it claimed, instead of draining the outbox
            # before the error can leave this function.
            feed.cancel()
            raise


def _reads_in_process(run: SyncRun) -> bool:
    """Whether this run's store-reading steps go to a process of their own (:func:`send_while_reading`)."""
    return _may_read_in_process(run) and _store_skipped(run) is None


def _may_read_in_process(run: SyncRun) -> bool:
    """:func:`_reads_in_process` but for the store lock (not taken here)."""
    from kl_sync.store_process import in_memory

    s = run.settings
    # POSIX only: the process reports over a pipe it inherits (pass_fds) and is read with select().
    return bool(s.store_process) and os.name == "posix" and not in_memory(s.store_url) and not in_memory(s.state_url)


def _warm_up_early(run: SyncRun) -> None:
    """Start loading GX's suites now, on a thread of their own, for a run that will validate rows
    read from the start in the store process (the sender's own warm-up, :func:`send_outbox`, then
    waits for this one instead of beginning it). Begun before the key check and the store process's
    start, the import overlaps their waits: the first bulk request waited for it (benchmark 8's
    request timeline: its claim began ~0.55 s after the first chunk was queued, GX's import not done;
    with 250 ms of round trip the key check alone put it ~0.3 s later). A daemon thread: a run that
    stops before it is done (a refused key) does not wait for it. Its error, if any, is the first
    validation's to raise (it loads the suites again). The store lock is not taken for this (the key
    is checked first): when another run holds it, the steps are skipped and the suites load for
    nothing unless rows are pending, seconds of CPU on a thread nothing waits for."""
    if not (_may_read_in_process(run) and _reads_from_the_start(run)):
        return

    def warm_up() -> None:
        from kl_sync.quality.suites import engine  # what the sender's own warm-up loads

        with suppress(Exception):
            engine()

    threading.Thread(target=warm_up, name="kl-sync-gx-warm-up", daemon=True).start()


def _reads_from_the_start(run: SyncRun) -> bool:
    """Whether this run reads the store from its first rows (``--from-start``, or a state that has
    read no log row nor order yet): then it has rows to validate for certain, and the sender loads
    GX's suites while the store process reads them. An incremental run loads them on its first
    validation, and one that finds nothing new never does (benchmark 5: ~1.5 s of CPU saved)."""
    from kl_sync.state.cursors import get_cursor

    if run.from_start:
        return True
    with run.state.connect() as conn:
        return all(get_cursor(conn, step.source.stream) is None for step in (PARSE, ORDERS))  # type: ignore[attr-defined]


def _read_in_thread(run: SyncRun, steps: Sequence[str], feed: OutboxFeed, sending: Future[StepResult]) -> None:
    def committed() -> None:
        feed.committed()
        if sending.done() and sending.exception() is not None:
            raise _SenderFailed

    run.on_commit = committed
    for step in steps:
        run_step(run, step)
        if sending.done():
            break


def _read_in_process(run: SyncRun, steps: Sequence[str], feed: OutboxFeed, sending: Future[StepResult]) -> None:
    """The steps in :class:`~kl_sync.store_process.StoreProcess`, this thread relaying what it reports:
    each commit to the sender's feed and the step's progress bar, each step's result to the run, its
    error or its interruption raised here. However this ends, the process is stopped and waited for
    first, so nothing writes to the store's side of the state once the run is recorded."""
    from kl_sync.store_process import StoreProcess, StoreProcessError

    interruption = run.interruption
    held = interruption is not None and interruption.hold
    if interruption is not None:
        interruption.hold = True  # a process started is always handed to the ``finally`` that stops it
    try:
        child = StoreProcess.start(run.settings, run_id=run.run_id, steps=steps, from_start=run.from_start)
    finally:
        if interruption is not None:
            interruption.hold = held
    with ExitStack() as bars:
        try:
            if interruption is not None:
                interruption.check()  # a signal that came while it started
            advance: dict[str, Callable[[int], None]] = {}
            for message in child.messages():
                if sending.done():  # the sender failed (its error is raised) or was stopped
                    raise _SenderFailed
                if message is None:
                    continue
                kind = message[0]
                if kind == "commit":
                    _, step, rows = message
                    if step not in advance:
                        declared = STORE_STEPS[step]
                        advance[step] = bars.enter_context(step_progress(f"{declared.name}: {declared.progress_label}"))
                    advance[step](rows)
                    feed.committed()
                elif kind == "result":
                    run.results[message[1]] = message[2]
                elif kind == "failed":
                    error = message[2]
                    if isinstance(error, BaseException):
                        raise error
                    raise StoreProcessError(f"{message[1] or 'store'} step failed: {error['type']}: {error['line']}")
                elif kind == "interrupted":
                    raise Interrupted(message[1])
                elif kind == "done":
                    run.store_process = {"pid": child.process.pid, "peak_rss_mb": round(message[1], 1)}
        finally:
            child.stop()


#: Opens the run's Klaviyo client when the send or verify step needs it (kl_sync.app.clients.klaviyo_client).
ClientOpener = Callable[[], AbstractContextManager[Any]]

#: The steps that take the run's client, by name.
_CLIENT_STEP = {"send": run_send, "verify": run_verify, "consent": run_consent}


def run_pipeline(
    settings: Settings,
    open_client: ClientOpener,
    *,
    steps: Sequence[str] | None = None,
    from_start: bool = False,
    dry_run: bool = False,
    verify_since: dt.datetime | None = None,
    interruption: Interruption | None = None,
) -> dict[str, Any]:
    """One whole run in this process: the chosen steps in pipeline order, the run recorded as ok or
    failed with its reason. ``open_client`` is entered once, before the store is read when a step
    talks to Klaviyo: the key is checked first (:func:`~kl_sync.klaviyo.reads.check_key`). Returns
    the run's counts; re-raises what stopped it. With ``interruption`` (the signal handler of
    :mod:`kl_sync.app.run`), a signal ends the run ``interrupted``: :class:`Failure` with its line."""
    run = start_sync(settings, steps=steps, from_start=from_start, dry_run=dry_run, verify_since=verify_since,
                     interruption=interruption)
    run.interruption = interruption
    check = interruption.check if interruption is not None else (lambda: None)

    def hold(on: bool) -> None:  # signals held while the run is recorded as started or ended
        if interruption is not None:
            interruption.hold = on

    def defer(on: bool) -> None:
        if interruption is not None:
            interruption.defer = on
    store_steps = [s for s in run.steps if s not in CLIENT_STEPS]
    client_steps = [s for s in run.steps if s in CLIENT_STEPS]
    overlap = sends_while_reading(run.steps, dry_run=dry_run)
    try:
        hold(False)
        check()
        talks_to_klaviyo = any(step in CLIENT_STEPS for step in run.steps)
        if overlap:
            _warm_up_early(run)
        with open_client() if talks_to_klaviyo else nullcontext() as client:
            if client is not None:
                check_key(client)  # a refused key stops the run before the store is read
            check()
            try:
                if overlap:
                    # After a signal, the steps stop at their next commit and the sender's thread
                    # (it sees the interruption's event) at its next call, handing back the rest.
                    send_while_reading(run, client, store_steps)
                else:
                    for step in store_steps:
                        check()
                        run_step(run, step)
                for step in client_steps:
                    if not (overlap and step == "send"):
                        check()
                        defer(step == "send")  # the sender in this thread stops itself, cleanly
                        try:
                            _CLIENT_STEP[step](run, client)
                        finally:
                            defer(False)
                check()
            finally:
                if client is not None:
                    run.client_stats = client.stats.as_dict()
        hold(True)
        failure = undelivered_failure(run)
        if failure is not None:
            raise failure
    except Interrupted as exc:
        hold(True)
        raise _interrupted(run, exc.signum) from None
    except BaseException as exc:
        hold(True)
        from sqlalchemy.exc import DBAPIError

        # Recording the failure must not hide it when the state database is what failed.
        with suppress(DBAPIError):
            finish_sync(run, error=exc)
        unreachable = _unreachable(run, exc)
        if unreachable is not None:
            raise unreachable from None
        raise
    return finish_sync(run)


def _unreachable(run: SyncRun, exc: BaseException) -> Failure | None:
    """Klaviyo could not be reached at all (the key check before the store is read): the one line
    says so, and how many rows wait."""
    import sys

    errors = sys.modules.get("kl_sync.klaviyo.errors")
    if errors is None or not isinstance(exc, errors.RetryableError):
        return None
    from sqlalchemy.exc import DBAPIError

    try:
        with run.state.connect() as conn:
            waiting = pending_count(conn)
    except DBAPIError:
        return None
    return Failure(f"Klaviyo unreachable: {exc}; {waiting} rows wait for the next run",
                   exit_code=EXIT_KLAVIYO_UNREACHABLE)


def undelivered_failure(run: SyncRun) -> Failure | None:
    """Whether the send delivered nothing while rows failed for a reason worth retrying (Klaviyo
    unreachable, or answering only 5xx / 429): then the run failed, and its one line says how many
    rows wait and when the first is due again (exit 4). A send that delivered some of them says
    ``partly delivered`` in its summary (``details["delivery"]``) and the run is ok."""
    send = run.results.get("send")
    if send is None or run.dry_run or not send.details.get("retries"):
        return None
    sent = sum(n for name, n in send.details.items() if name.startswith("sent_") and isinstance(n, int))
    with run.state.connect() as conn:
        waiting, due = waiting_for_retry(conn)
    when = "" if due is None else f", next at {due:%H:%M} UTC"
    if sent:
        send.details["delivery"] = f"partly delivered: {sent} sent, {waiting} wait for retry{when}"
        return None
    return Failure(f"Klaviyo unreachable: {waiting} rows wait for retry{when}", exit_code=EXIT_KLAVIYO_UNREACHABLE)


def signal_name(signum: int) -> str:
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _interrupted(run: SyncRun, signum: int) -> Failure:
    """Record the run ``interrupted`` (every row it held handed back) and say so in one line."""
    name = signal_name(signum)
    finish_sync(run, error=RuntimeError(f"interrupted by {name}"), status="interrupted")
    with run.state.connect() as conn:
        waiting = pending_count(conn)
    send = run.results.get("send")
    sent = sum(v for k, v in send.details.items() if k.startswith("sent_")) if send is not None else 0
    return Failure(f"interrupted by {name}: {sent} rows sent, {waiting} wait for the next run (none left leased)",
                   exit_code=EXIT_INTERRUPTED if name == "SIGINT" else EXIT_TERMINATED)


def validate_pending(settings: Settings, *, chunk_size: int = 20_000) -> list[Any]:
    """Validate every pending outbox row against its kind's suite without sending or changing
    anything (``kl-sync quality check``); one report per kind and chunk."""
    from kl_sync.quality import validate_batch

    state = open_state(settings.state_url)
    names = metric_names(settings)
    reports = []
    for rows in iter_pending(state, chunk_size=chunk_size):
        by_kind: dict[str, list[tuple[str, Any]]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append((row.key, row.payload))
        for kind, batch in sorted(by_kind.items()):
            reports.append(validate_batch(kind, batch, metric_names=names.get(kind, ())))
    return reports


def dead_letters_of_run(run: SyncRun) -> dict[str, Any]:
    """The dead letters after the run: per status, the open ones by reason, how many the run
    resolved (``resolved``) and added (``added``): the run's ``kl-sync-dead-letters`` artifact."""
    with run.state.connect() as conn:
        report = letters_report(conn, run_ids=[run.run_id])
        added = len(list_dead_letters(conn, include_replayed=True, run_id=run.run_id))
    return {**report, "resolved_by_this_run": report["resolved_by_run"].get(run.run_id, 0), "added_by_this_run": added}


#: What a step's per-metric figures count, by step (the store-reading steps queue).
_PER_METRIC = {"send": "sent", "verify": "verified", "consent": "read"}


def summary_rows(run: SyncRun) -> list[dict[str, Any]]:
    """The run summary as table rows (one per figure): what the artifact and the CLI show."""
    rows: list[dict[str, Any]] = []
    for name in STEPS:
        result = run.results.get(name)
        if result is None:
            continue
        rows.append({"step": name, "figure": "rows read", "value": result.rows_read})
        if name not in CLIENT_STEPS:
            rows.append({"step": name, "figure": "queued", "value": result.queued})
        for metric, n in sorted(result.by_metric.items()):
            rows.append({"step": name, "figure": f"{_PER_METRIC.get(name, 'queued')}: {metric}", "value": n})
        for key in (*(f"sent_{operation.name}" for operation in OPERATIONS), "retries", "lease_lost", "quality_rejects",
                    "verified", "missing", "resent", "subscribed_but_blocked"):
            if key in result.details:
                rows.append({"step": name, "figure": key.replace("_", " "), "value": result.details[key]})
        http = result.details.get("http_requests") or {}
        if http:
            rows.append({"step": name, "figure": "HTTP requests", "value": http.get("requests", 0)})
        rows.append({"step": name, "figure": "dead letters", "value": result.dead_letters})
    return rows


def delivery_rows(state: Engine) -> list[dict[str, Any]]:
    """Per metric (or kind), the outbox rows queued, sent, verified, missing and dead: the run
    summary's delivery table and ``kl-sync status``."""
    with state.connect() as conn:
        return delivery_counts(conn)
