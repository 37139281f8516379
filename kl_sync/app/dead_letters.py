"""``kl-sync dead-letters``: list, replay and discard dead letters (the handlers; ``cli.py`` only
registers the subcommands). A letter is open until its key is delivered (resolved, by whatever sent
it) or a person discards it; see :mod:`kl_sync.state.dead_letters`."""

from __future__ import annotations

import argparse
from typing import Any

from kl_sync.settings import get_settings

#: ``replay`` exits with this when a key is still failing (its letter stays open); 2 when a key is unknown.
EXIT_STILL_FAILING = 1


def selection_of(args: argparse.Namespace, *, statuses: Any = None) -> Any:
    """The letters the command's keys and selectors name (``--reason`` is a part of the reason)."""
    from kl_sync.app.cli import CliError, parse_since
    from kl_sync.state.dead_letters import OPEN, STATUSES, UNSETTLED, Selection

    keys = list(getattr(args, "keys", None) or [])
    chosen = statuses or (STATUSES if getattr(args, "all_statuses", False) else (OPEN,))
    selectors = {"reason": args.reason, "step": getattr(args, "step", None), "kind": getattr(args, "kind", None),
                 "since": parse_since(args.since) if getattr(args, "since", None) else None}
    if statuses is UNSETTLED and not keys and not any(selectors.values()) and not getattr(args, "all", False):
        raise CliError("name the letters: KEY…, or --reason TEXT, --step, --kind, --since, or --all")
    return Selection(tuple(keys), statuses=chosen, **selectors)


#: Reasons ``kl-sync status`` shows (``dead-letters list`` shows them all).
STATUS_REASONS = 10


def letters_status(conn: Any, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The dead letters part of ``kl-sync status``: letters per status, the open ones by reason, and
    (written into each of ``runs``) how many letters each run resolved."""
    from kl_sync.state.dead_letters import letters_report

    report = letters_report(conn, run_ids=[run["id"] for run in runs], reasons=STATUS_REASONS)
    for run in runs:
        run["letters_resolved"] = report["resolved_by_run"].get(run["id"], 0)
    return report


def summary_lines(summary: list[dict[str, Any]]) -> list[str]:
    """One line per reason, never wrapped into a table: count, first and last seen (to the second),
    an example key, the reason."""
    if not summary:
        return ["  none"]
    width = max(len(s["example"]) for s in summary)
    lines = [f"  {'letters':>7}  {'first seen':<19}  {'last seen':<19}  {'example':<{width}}  reason"]
    for s in summary:
        lines.append(f"  {s['letters']:>7,}  {s['first_seen']:%Y-%m-%d %H:%M:%S}  {s['last_seen']:%Y-%m-%d %H:%M:%S}"
                     f"  {s['example']:<{width}}  {s['reason']}")
    return lines


def print_letters_status(report: dict[str, Any]) -> None:
    print(f"dead letters: {report['open']:,} open, {report['replayed']:,} replayed (waiting to be delivered), "
          f"{report['resolved']:,} resolved, {report['discarded']:,} discarded")
    if report["open_by_reason"]:
        shown = len(report["open_by_reason"])
        more = f" (the first {shown} of {report['reasons']}: kl-sync dead-letters list)" if shown < report["reasons"] else ""
        print(f"open dead letters by reason{more}:")
        for line in summary_lines(report["open_by_reason"]):
            print(line)


def cmd_list(args: argparse.Namespace) -> int:
    from kl_sync import state as st
    from kl_sync.app.cli import _print_json
    from kl_sync.state.dead_letters import letters_by_reason, select_letters

    engine = st.open_state(get_settings().state_url)
    selection = selection_of(args)
    with engine.connect() as conn:
        if args.json or args.limit is not None:
            letters = select_letters(conn, selection, limit=args.limit)
        else:
            summary = letters_by_reason(conn, selection)
    if args.json:
        _print_json(letters)
        return 0
    if args.limit is not None:
        # One line a letter, never wrapped: a reason can be long.
        width = max([len(d["key"]) for d in letters] or [0])
        print(f"  {'created':<19}  {'status':<9}  {'step':<9}  {'key':<{width}}  reason")
        for d in letters:
            print(f"  {d['created_at']:%Y-%m-%d %H:%M:%S}  {d['status']:<9}  {d['step']:<9}  {d['key']:<{width}}  "
                  f"{d['reason']}")
        print(f"{len(letters):,} letters" + (f" (--limit {args.limit})" if len(letters) == args.limit else ""))
        return 0
    print(f"dead letters ({', '.join(selection.statuses)}) by reason:")
    for line in summary_lines(summary):
        print(line)
    print(f"{sum(s['letters'] for s in summary):,} letters, {len(summary):,} reasons; rows: --limit N or --json")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from kl_sync import state as st
    from kl_sync.state.dead_letters import UNSETTLED
    from kl_sync.steps.replay import FAILING, NOT_FOUND, replay_letters

    from kl_sync.store.readers import store_engine

    settings = get_settings()
    selection = selection_of(args, statuses=UNSETTLED)
    engine = st.open_state(settings.state_url)
    with engine.begin() as conn:
        run_id = st.start_run(conn, steps=["replay"])
    outcomes = replay_letters(engine, selection, store=store_engine(settings.store_url), settings=settings,
                              run_id=run_id)
    counts = {o: sum(1 for r in outcomes if r.outcome == o) for o in {r.outcome for r in outcomes}}
    with engine.begin() as conn:
        st.finish_run(conn, run_id, status="ok", counts={"replay": counts})
    for outcome in outcomes:
        print(f"{outcome.key}: {outcome.line()}")
    if not outcomes:
        print("no dead letter matches")
    if any(o.outcome == NOT_FOUND for o in outcomes):
        return 2
    return EXIT_STILL_FAILING if any(o.outcome == FAILING for o in outcomes) else 0


def cmd_discard(args: argparse.Namespace) -> int:
    from kl_sync import state as st
    from kl_sync.app.cli import CliError
    from kl_sync.state.dead_letters import UNSETTLED, discard_letters

    selection = selection_of(args, statuses=UNSETTLED)
    engine = st.open_state(get_settings().state_url)
    with engine.begin() as conn:
        discarded = discard_letters(conn, selection, note=args.note)
    unknown = sorted(set(selection.keys) - {letter["key"] for letter in discarded})
    print(f"discarded {len(discarded):,} dead letter(s)" + (f" ({args.note})" if args.note else ""))
    if unknown:
        raise CliError(f"no open dead letter for {', '.join(unknown[:10])}" + (" …" if len(unknown) > 10 else ""))
    return 0


def add_commands(dead_sub: Any) -> None:
    """``dead-letters list | replay | discard``, under the ``dead-letters`` parser's subparsers."""
    from kl_sync.state.dead_letters import STATUSES

    dl_list = dead_sub.add_parser("list", help="open dead letters by reason (count, first/last seen, an example key)")
    _selectors(dl_list)
    dl_list.add_argument("--all", dest="all_statuses", action="store_true",
                         help=f"every letter, whatever its status ({', '.join(STATUSES)}); default: open ones")
    dl_list.add_argument("--limit", type=int, default=None, help="list letters one per row, at most this many")
    dl_list.add_argument("--json", action="store_true", help="the letters as JSON rows (with --limit: at most that many)")
    dl_list.set_defaults(handler=cmd_list)

    dl_replay = dead_sub.add_parser("replay", help="rebuild letters' keys from the store's current data and queue them")
    dl_replay.add_argument("keys", nargs="*", metavar="KEY", help="letters' keys (log:<id>, order:<id>:placed, …)")
    _selectors(dl_replay)
    dl_replay.add_argument("--all", action="store_true", help="every open dead letter")
    dl_replay.set_defaults(handler=cmd_replay)

    dl_discard = dead_sub.add_parser("discard", help="give up on letters for good (they leave the open list)")
    dl_discard.add_argument("keys", nargs="*", metavar="KEY", help="letters' keys")
    _selectors(dl_discard)
    dl_discard.add_argument("--all", action="store_true", help="every open dead letter")
    dl_discard.add_argument("--note", default=None, help="why (kept with the letter)")
    dl_discard.set_defaults(handler=cmd_discard)


def _selectors(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reason", default=None, help="letters whose reason contains TEXT (case-insensitive)")
    parser.add_argument("--step", default=None, help="letters of one step (parse, orders, customers, suppress, "
                                                     "quality, send, verify)")
    parser.add_argument("--kind", default=None, help="letters of one outbox kind (log_event, order_event, …)")
    parser.add_argument("--since", default=None, help="letters created since: an ISO 8601 date-time (naive: UTC) "
                                                      "or a duration back from now, e.g. P7D")
