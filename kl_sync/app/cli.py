"""The ``kl-sync`` command. A thin edge: it parses arguments, calls the library, and turns library
errors into one clear line and an exit code. Prefect is imported only to run a flow."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from kl_sync.failures import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, Failure, failure_of
from kl_sync.settings import get_settings, prefect_defaults, reaching

Handler = Callable[[argparse.Namespace], int]


class CliError(Failure):
    """An argument a user must fix: printed as one line, exit code 2."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _console() -> Any:
    """Rich's console on standard output, whose closed pipe is a :class:`BrokenPipeError` like
    ``print``'s (:func:`main` exits 141 for both), not rich's own silent exit 1."""
    from rich.console import Console

    class _Output(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            raise BrokenPipeError

    return _Output()


def _table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    if not rows:
        _console().print(f"[bold]{title}[/bold]: none")
        return
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    _console().print(table)


def state_engine() -> Any:
    """kl-sync's state database, opened (and migrated) for a command; unreachable, it is the one
    line naming ``KL_SYNC_STATE_URL``."""
    from kl_sync.state.migrate import open_state

    url = get_settings().state_url
    with reaching("KL_SYNC_STATE_URL"):
        return open_state(url)


def store_engine() -> Any:
    """The shop's database for a command, connected once; unreachable, the line names ``KL_SYNC_STORE_URL``."""
    from kl_sync.store.readers import store_engine as open_store

    engine = open_store(get_settings().store_url)
    with reaching("KL_SYNC_STORE_URL"), engine.connect():
        pass
    return engine


# ------------------------------------------------------------------------------------------ store


def cmd_store_generate(args: argparse.Namespace) -> int:
    import time

    from kl_sync.db import make_engine
    from kl_sync.store.generate import generate_store

    engine = make_engine(args.url, sqlite_wal=False)
    started = time.perf_counter()
    try:
        counts = generate_store(engine, customers_count=args.customers, seed=args.seed, years=args.years, replace=args.replace)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    elapsed = time.perf_counter() - started
    print(
        f"generated {counts.customers} customers, {counts.orders} orders, {counts.order_items} order items, "
        f"{counts.system_log} log rows into {engine.url.render_as_string(hide_password=True)} "
        f"in {elapsed:.1f} s ({counts.rows / elapsed:,.0f} rows/s)"
    )
    return 0


# --------------------------------------------------------------------------------------------- db


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from kl_sync.db import make_engine
    from kl_sync.state.migrate import upgrade

    engine = make_engine(args.url or get_settings().state_url)
    with reaching("--url" if args.url else "KL_SYNC_STATE_URL"):
        revision = upgrade(engine, args.revision)
    print(f"state database at revision {revision}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from kl_sync.db import make_engine
    from kl_sync.state.migrate import current_revision, head_revision

    engine = make_engine(args.url or get_settings().state_url)
    with reaching("--url" if args.url else "KL_SYNC_STATE_URL"):
        current = current_revision(engine)
    print(f"current: {current or 'empty'}; head: {head_revision()}")
    return 0


# ------------------------------------------------------------------------------------------- sync


def cmd_sync(args: argparse.Namespace) -> int:
    from kl_sync.pipeline import STEPS, parse_steps

    settings = get_settings()  # fail on bad settings before anything starts
    try:
        steps = parse_steps(args.steps)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if args.rate_scale <= 0:
        raise CliError(f"--rate-scale must be positive, not {args.rate_scale:g}")
    if args.limit < 0:
        raise CliError(f"--limit must not be negative, not {args.limit}")
    if args.prefect and args.no_prefect:
        raise CliError("--prefect and --no-prefect: choose one (without either, the run is in this process)")
    if args.prefect:
        counts = _sync_through_prefect(args, steps, debug=args.debug)
    else:
        from kl_sync.app.clients import rate_limiter
        from kl_sync.app.run import run_sync

        if args.rate_limit == "prefect":
            raise CliError("--rate-limit prefect needs the Prefect flow: add --prefect, or use shared")
        limiter = rate_limiter(settings, args.rate_limit, scale=args.rate_scale)
        counts = run_sync(settings, steps=steps, from_start=args.from_start, dry_run=args.dry_run, limiter=limiter)
    send = counts.get("send", {})
    pending = _dry_run_payloads(args, send) if send.get("dry_run") else None
    if args.json:
        _print_json(counts)
        return 0
    for preview in send.get("preview", []):
        _print_json(preview)
    if pending is not None:
        print(f"dry run: {len(send['preview']):,} of the {pending:,} payloads the next send would make are shown; "
              "all of them: --limit N, --json, or --out FILE (one JSON object a line)")
    _table("kl-sync run", [
        {"step": name, "read": c.get("rows_read"), "queued": c.get("queued") if name not in ("send", "verify") else "",
         "dead letters": c.get("dead_letters"), "sent": c.get("sent_events", "") if name == "send" else "",
         "verified": c.get("verified", "") if name == "verify" else ""}
        for name, c in counts.items() if name in STEPS  # not "http" nor "store_process": not steps
    ])
    return 0


def _dry_run_payloads(args: argparse.Namespace, send: dict[str, Any]) -> int:
    """A dry run's previews as asked (``--limit``, ``--out``) in place of the run's first 20; returns
    how many payloads are pending in all."""
    from kl_sync.state.outbox import pending_count
    from kl_sync.steps.send import preview_outbox

    engine = state_engine()
    with engine.connect() as conn:
        pending = pending_count(conn)
    if args.out:
        out = Path(args.out)
        with out.open("w", encoding="utf-8") as file:
            for preview in preview_outbox(engine, limit=pending):
                file.write(json.dumps(preview, default=str, ensure_ascii=False) + "\n")
        print(f"dry run: wrote the {pending:,} payloads the next send would make to {out}", file=sys.stderr)
    send["preview"] = preview_outbox(engine, limit=args.limit)
    send["pending"] = pending
    return pending


def _sync_through_prefect(args: argparse.Namespace, steps: list[str], *, debug: bool) -> dict[str, Any]:
    """``kl-sync sync --prefect``: the same run as a local Prefect flow run (a temporary Prefect server,
    which dies with this process, unless ``PREFECT_API_URL`` names one), as ``python flows/sync.py`` does."""
    prefect_defaults()
    if not debug:
        # The run's logs go to the Prefect server; its console handler would print a failed task's
        # traceback above the one line a failure prints.
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    from flows.sync import sync  # Prefect is imported here only, to run the flow
    from flows.prefect_server import temporary_prefect_server

    with temporary_prefect_server():
        return sync(steps=steps, from_start=args.from_start, dry_run=args.dry_run,
                    rate_limit=args.rate_limit, rate_scale=args.rate_scale)


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """``--since``: an ISO 8601 date or date-time (naive means UTC), or a duration back from now
    (``P7D``, ``PT12H``); naive UTC, as the state database keeps times."""
    from pydantic import TypeAdapter, ValidationError

    from kl_sync.normalize import naive_utc

    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if text.upper().startswith(("P", "-P")):
        try:
            return now - TypeAdapter(dt.timedelta).validate_python(text.upper())
        except ValidationError:
            raise CliError(f"--since {text!r}: not an ISO 8601 duration (e.g. P7D, PT12H)") from None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since {text!r}: not an ISO 8601 date-time (e.g. 2026-12-01T00:00:00+00:00) "
                       "or duration (e.g. P7D)") from None
    return naive_utc(moment)


def cmd_verify(args: argparse.Namespace) -> int:
    from kl_sync.app.clients import rate_limiter
    from kl_sync.app.run import run_sync
    from kl_sync.pipeline import delivery_rows

    settings = get_settings()
    since = parse_since(args.since) if args.since else None
    counts = run_sync(settings, steps=["verify"], verify_since=since, limiter=rate_limiter(settings, args.rate_limit))
    delivery = delivery_rows(state_engine())
    if args.json:
        _print_json({"verify": counts.get("verify", {}), "delivery": delivery})
        return 0
    verify = counts.get("verify", {})
    print(f"verified {verify.get('verified', 0):,} of {verify.get('rows_read', 0):,} rows due; "
          f"{verify.get('missing', 0):,} not in Klaviyo yet, {verify.get('resent', 0):,} sent again, "
          f"{verify.get('dead_letters', 0):,} dead letters (accepted but never appeared)")
    _table("delivery", delivery)
    return 0


def cmd_consent(args: argparse.Namespace) -> int:
    from kl_sync.app.clients import rate_limiter
    from kl_sync.app.run import run_sync
    from kl_sync.steps.consent import consent_report

    settings = get_settings()
    counts = run_sync(settings, steps=["consent"], limiter=rate_limiter(settings, args.rate_limit))
    report = consent_report(state_engine(), store_engine())
    if args.json:
        _print_json({"read": counts.get("consent", {}).get("rows_read", 0), "customers": report})
        return 0
    print(f"read {counts.get('consent', {}).get('rows_read', 0):,} profiles Klaviyo suppressed since the last read; "
          f"{len(report):,} customers the store believes subscribed cannot be e-mailed by Klaviyo")
    _table("subscribed in the store, not e-mailable in Klaviyo (kl-sync never writes the store)", report)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from kl_sync import state as st
    from kl_sync.app.dead_letters import letters_status, print_letters_status

    engine = state_engine()
    with engine.connect() as conn:
        status = {
            "cursors": st.all_cursors(conn),
            "outbox": st.outbox_counts(conn),
            "delivery": st.delivery_counts(conn),  # the pipeline (and requests) not imported for this
            "stuck_leases": st.stuck_leases(conn),
            "runs": st.recent_runs(conn, limit=args.runs),
        }
        status["dead_letters"] = letters_status(conn, status["runs"])
    if args.json:
        _print_json(status)
        return 0
    _table("cursors", status["cursors"])
    _table("outbox", status["outbox"])
    _table("delivery (sent: Klaviyo answered 2xx; verified: read back from Klaviyo)", status["delivery"])
    print_letters_status(status["dead_letters"])
    print(f"rows under an expired lease: {status['stuck_leases']}")
    _table("last runs", [
        {"run": r["id"][:8], "started": r["started_at"], "status": r["status"], "steps": r["steps"],
         "letters resolved": r["letters_resolved"], "error": r["error"] or ""}
        for r in status["runs"]
    ])
    return 0


# ---------------------------------------------------------------------------------------- quality


def cmd_quality_check(args: argparse.Namespace) -> int:
    from kl_sync.pipeline import validate_pending

    settings = get_settings()
    with reaching("KL_SYNC_STATE_URL"):
        reports = validate_pending(settings)
    summary: dict[str, dict[str, Any]] = {}
    for report in reports:
        entry = summary.setdefault(report.kind, {"rows": 0, "failing_rows": 0, "by_expectation": {}})
        entry["rows"] += report.rows
        entry["failing_rows"] += len(report.failures)
        for check, n in report.by_expectation.items():
            entry["by_expectation"][check] = entry["by_expectation"].get(check, 0) + n
    if args.json:
        _print_json(summary)
    else:
        _print_quality(summary, show_all=args.all)
    # Exit 1 when something would be dead-lettered, so scripts can gate on it.
    return 1 if any(e["failing_rows"] for e in summary.values()) else 0


def _print_quality(summary: dict[str, dict[str, Any]], *, show_all: bool) -> None:
    """One line of totals, then the expectations that failed (every expectation with ``--all``)."""
    rows = sum(e["rows"] for e in summary.values())
    failing = sum(e["failing_rows"] for e in summary.values())
    checks = [(kind, check, n) for kind, e in sorted(summary.items()) for check, n in sorted(e["by_expectation"].items())]
    failed = [(kind, check, n) for kind, check, n in checks if n]
    print(f"{rows:,} pending rows in {len(summary)} suites: {failing:,} would be dead letters, failing "
          f"{len(failed)} of {len(checks)} expectations" + ("" if show_all else " (--all lists every expectation)"))
    shown = checks if show_all else failed
    if shown:
        _table("expectations" if show_all else "failing expectations",
               [{"suite": kind, "expectation": check, "failing rows": n} for kind, check, n in shown])


def cmd_quality_docs(args: argparse.Namespace) -> int:
    from kl_sync.pipeline import validate_pending
    from kl_sync.quality import build_data_docs

    settings = get_settings()
    with reaching("KL_SYNC_STATE_URL"):
        reports = validate_pending(settings)
    if not reports:
        print("nothing pending to validate: the outbox is empty")
        return 0
    index = build_data_docs(reports, Path(args.out))
    print(f"GX Data Docs for {sum(r.rows for r in reports)} pending rows: {index}")
    return 0


# ------------------------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from kl_sync.app.demo import run_demo

    return run_demo(customers=args.customers, seed=args.seed, fresh=args.fresh)


# ----------------------------------------------------------------------------------------- onsite


def cmd_onsite_serve(args: argparse.Namespace) -> int:
    from kl_sync.app.onsite import PagesError, serve_pages

    try:
        return serve_pages(get_settings(), customer_id=args.customer, host=args.host, port=args.port,
                           klaviyo_url=args.klaviyo_url, public_key=args.public_key, emulator_port=args.emulator_port)
    except PagesError as exc:
        raise CliError(str(exc)) from None


def _add_onsite_command(sub: Any) -> None:
    from kl_sync.settings import EMULATOR_PORT, EMULATOR_PUBLIC_KEY

    onsite = sub.add_parser("onsite", help="the store's pages that call Klaviyo's JavaScript")
    onsite_sub = onsite.add_subparsers(dest="onsite_command", required=True, metavar="SUBCOMMAND")
    serve = onsite_sub.add_parser("serve", help="serve the five demo pages of one customer, against the emulator")
    serve.add_argument("--customer", type=int, help="customer id (default: the first with all five pages)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8766, help="port of the pages (default 8766; 0 = any free)")
    serve.add_argument("--klaviyo-url", help="a running Klaviyo emulator (default: start the demo's)")
    serve.add_argument("--emulator-port", type=int, default=EMULATOR_PORT,
                       help=f"port of the demo's emulator it starts (default {EMULATOR_PORT}; 0 = any free)")
    serve.add_argument("--public-key", default=EMULATOR_PUBLIC_KEY,
                       help=f"its public key, with --klaviyo-url (default: the demo's, {EMULATOR_PUBLIC_KEY})")
    serve.set_defaults(handler=cmd_onsite_serve)


# ----------------------------------------------------------------------------------------- parser


def _add_store_and_db_commands(sub: Any) -> None:
    """``store generate`` and ``db upgrade`` / ``db current``."""
    store = sub.add_parser("store", help="the shop's database (demo generator)")
    store_sub = store.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    gen = store_sub.add_parser("generate", help="write a realistic, deterministic demo store into a database URL")
    gen.add_argument("--url", required=True, help="SQLAlchemy URL of the store to write, e.g. sqlite:///store.db")
    gen.add_argument("--customers", type=int, default=500, help="how many customers (default 500)")
    gen.add_argument("--seed", type=int, default=1, help="random seed: the same seed gives the same store")
    gen.add_argument("--years", type=float, default=2.0, help="years of history (default 2)")
    gen.add_argument("--replace", action="store_true", help="drop and recreate the contract tables first")
    gen.set_defaults(handler=cmd_store_generate)

    db = sub.add_parser("db", help="kl-sync's own state database")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    up = db_sub.add_parser("upgrade", help="apply the state schema migrations (also done on every start)")
    up.add_argument("--url", help="state database URL (default: KL_SYNC_STATE_URL)")
    up.add_argument("--revision", default="head", help="target revision (default head)")
    up.set_defaults(handler=cmd_db_upgrade)
    cur = db_sub.add_parser("current", help="show the state database's schema revision")
    cur.add_argument("--url", help="state database URL (default: KL_SYNC_STATE_URL)")
    cur.set_defaults(handler=cmd_db_current)


def _add_sync_command(sub: Any) -> None:
    """``sync`` and its options."""
    sync = sub.add_parser("sync", help="run the sync once, in this process (--prefect: as a Prefect flow run)")
    sync.add_argument("--from-start", action="store_true", help="initial sync: re-read the log and orders from the first row")
    sync.add_argument("--dry-run", action="store_true", help="send nothing to Klaviyo; print the payloads it would send")
    sync.add_argument("--steps", default=None,
                      help="comma-separated subset of parse,orders,customers,suppress,send,verify,consent (default: all)")
    sync.add_argument("--json", action="store_true", help="print the run's counts as JSON")
    sync.add_argument("--limit", type=int, default=20, metavar="N",
                      help="with --dry-run: show N of the payloads it would send (default 20)")
    sync.add_argument("--out", metavar="FILE", help="with --dry-run: write every payload it would send to FILE (JSON lines)")
    sync.add_argument("--prefect", action="store_true",
                      help="run it as a local Prefect flow run (a temporary Prefect server unless PREFECT_API_URL is "
                           "set), as `python flows/sync.py` does; production runs the deployments of prefect.yaml")
    # Before --prefect, running in this process needed this flag; scripts still pass it.
    sync.add_argument("--no-prefect", action="store_true", help=argparse.SUPPRESS)
    sync.add_argument("--rate-limit", choices=("local", "shared", "prefect"), default="local",
                      help="Klaviyo rate limit kept per process (local, default), across every worker on the "
                           "state database (shared), or by Prefect global concurrency limits (prefect)")
    sync.add_argument("--rate-scale", type=float, default=1.0,
                      help="shorten the rate windows by this factor, to match an emulator started with "
                           "--rate-scale (default 1: Klaviyo's own windows)")
    sync.set_defaults(handler=cmd_sync)

    verify = sub.add_parser("verify", help="read Klaviyo back: mark what it holds verified, send again what never appeared")
    verify.add_argument("--since", default=None,
                        help="only rows sent since then: an ISO 8601 date-time (naive: UTC) or a duration back "
                             "from now, e.g. P7D (default: every row due)")
    verify.add_argument("--json", action="store_true", help="print the step's counts and the delivery table as JSON")
    verify.add_argument("--rate-limit", choices=("local", "shared"), default="local",
                        help="Klaviyo rate limit kept per process (local, default) or across every worker on the "
                             "state database (shared)")
    verify.set_defaults(handler=cmd_verify)

    consent = sub.add_parser("consent", help="read back whom Klaviyo cannot e-mail; list customers the store "
                                             "believes subscribed among them, with Klaviyo's reason and date")
    consent.add_argument("--json", action="store_true", help="machine-readable output")
    consent.add_argument("--rate-limit", choices=("local", "shared"), default="local",
                         help="Klaviyo rate limit kept per process (local, default) or across every worker on the "
                              "state database (shared)")
    consent.set_defaults(handler=cmd_consent)


def _add_reading_commands(sub: Any) -> None:
    """``status``, ``dead-letters`` and ``quality``: what the state database holds."""
    status = sub.add_parser("status", help="cursors, outbox counts, delivery per metric, dead letters and the last runs")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--runs", type=int, default=5, help="how many recent runs (default 5)")
    status.set_defaults(handler=cmd_status)

    from kl_sync.app import dead_letters

    dead = sub.add_parser("dead-letters", help="rows that could not be sent, with the reason: list, replay, discard")
    dead_letters.add_commands(dead.add_subparsers(dest="dead_command", required=True, metavar="SUBCOMMAND"))

    quality = sub.add_parser("quality", help="validate pending payloads against the GX suites")
    quality_sub = quality.add_subparsers(dest="quality_command", required=True, metavar="SUBCOMMAND")
    q_check = quality_sub.add_parser("check", help="validate everything pending without sending (exit 1 if any row fails)")
    q_check.add_argument("--json", action="store_true", help="machine-readable output (every expectation)")
    q_check.add_argument("--all", action="store_true", help="list every expectation, not only the failing ones")
    q_check.set_defaults(handler=cmd_quality_check)
    q_docs = quality_sub.add_parser("docs", help="build GX Data Docs (HTML) for the pending rows' validation")
    q_docs.add_argument("--out", default=".kl_sync/data-docs", help="folder for the site (default .kl_sync/data-docs)")
    q_docs.set_defaults(handler=cmd_quality_docs)


def _add_demo_and_emulator_commands(sub: Any) -> None:
    """``demo`` and ``emulator``."""
    demo = sub.add_parser("demo", help="the whole thing on the embedded defaults (what `make demo` runs)")
    demo.add_argument("--customers", type=int, default=300, help="demo store size (default 300)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--fresh", action="store_true", help="start from a new store, state and emulator")
    demo.set_defaults(handler=cmd_demo)

    from kl_sync.emulator import cli as emulator_cli

    emu = sub.add_parser("emulator", help="run the local Klaviyo emulator (default: the demo's account)")
    emulator_cli.add_arguments(emu)
    emu.set_defaults(handler=emulator_cli.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kl-sync", description="Keep Klaviyo true to the store's database.")
    parser.add_argument("--debug", action="store_true",
                        help="on a failure, print its traceback above the one line (README, \"Exit codes\")")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_store_and_db_commands(sub)
    _add_sync_command(sub)
    _add_reading_commands(sub)
    _add_demo_and_emulator_commands(sub)
    _add_onsite_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # The reader of the output went away (`kl-sync status | head`): nothing is wrong with the
        # command. Standard output goes to /dev/null, so no later flush fails on it either.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        failure = failure_of(exc)
        if failure is None:
            raise  # a bug: its traceback, exit 1
        if args.debug:
            traceback.print_exc()
        print(f"kl-sync: {failure.line}", file=sys.stderr)
        return failure.exit_code
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print("kl-sync: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_now(code: int) -> NoReturn:
    """End the process with ``code``, skipping the interpreter's teardown: after an initial sync it
    frees every object one by one, ~0.7 s that nobody waits for (benchmark 8). What the teardown
    would do that matters is done first: the exit handlers run (logging's flush among them), every
    database engine's connections close (SQLite checkpoints its WAL), the output is flushed.

    The usual exit instead while a thread the interpreter would wait for (not a daemon) still runs,
    or once Prefect is loaded (``--prefect``): its queues of events and logs drain on the
    interpreter's own shutdown of threads, which this would skip."""
    import atexit
    import threading

    from kl_sync.db import dispose_engines

    if "prefect" in sys.modules or any(thread.is_alive() and not thread.daemon for thread in threading.enumerate()
                                       if thread is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    dispose_engines()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with that descriptor closed (kl-sync sync >&-)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (kl-sync ... | head) or a closed stream
            pass
    os._exit(code)


def run() -> NoReturn:
    """The ``kl-sync`` command: :func:`main` on the command line, then :func:`exit_now`."""
    exit_now(main())


if __name__ == "__main__":
    run()
