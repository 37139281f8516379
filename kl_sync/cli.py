"""The ``kl-sync`` command. A thin edge: it parses arguments, calls the library, and turns library
errors into one clear line and an exit code. Prefect is imported only to run a flow."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kl_sync.settings import SettingsError, get_settings

Handler = Callable[[argparse.Namespace], int]


class CliError(Exception):
    """An error a user can act on: printed as one line, exit code 2."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def _table(title: str, rows: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    if not rows:
        Console().print(f"[bold]{title}[/bold]: none")
        return
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row.values()))
    Console().print(table)


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

    settings = get_settings()
    engine = make_engine(args.url or settings.state_url)
    print(f"state database at revision {upgrade(engine, args.revision)}")
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from kl_sync.db import make_engine
    from kl_sync.state.migrate import current_revision, head_revision

    engine = make_engine(args.url or get_settings().state_url)
    print(f"current: {current_revision(engine) or 'empty'}; head: {head_revision()}")
    return 0


# ------------------------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from kl_sync.demo import run_demo

    return run_demo(customers=args.customers, seed=args.seed, fresh=args.fresh)


# ----------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kl-sync", description="Keep Klaviyo true to the store's database.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    demo = sub.add_parser("demo", help="the whole thing on the embedded defaults (what `make demo` runs)")
    demo.add_argument("--customers", type=int, default=300, help="demo store size (default 300)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--fresh", action="store_true", help="start from a new store, state and emulator")
    demo.set_defaults(handler=cmd_demo)

    try:
        from kl_sync.emulator import cli as emulator_cli
    except ImportError:  # the emulator package is optional for a slim install
        emulator_cli = None
    if emulator_cli is not None:
        emu = sub.add_parser("emulator", help="run the local Klaviyo emulator")
        emulator_cli.add_arguments(emu)
        emu.set_defaults(handler=emulator_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SettingsError as exc:
        print(f"kl-sync: configuration error: {exc}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"kl-sync: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kl-sync: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
