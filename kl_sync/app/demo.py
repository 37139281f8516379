"""``make demo``: the whole job on the embedded defaults, with nothing configured.

It generates the demo store, starts the local Klaviyo emulator on loopback, runs the full sync flow
through Prefect, and prints what was sent, dead-lettered and suppressed, and how much of it was read
back from Klaviyo (verified). The demo verifies at once (``KL_SYNC_VERIFY_AFTER=PT0S``): its emulator
processes events as soon as it accepts them. Everything lives under
``.kl_sync/demo/``: the store (``store.db``), kl-sync's state (``state.db``) and the emulator's
account (``emulator/``). Running it again reuses them, so the second run sends nothing new. They are
the defaults of every command when nothing is configured (the default state follows the default
store, :data:`~kl_sync.settings.DEMO_STATE_URL`): ``kl-sync status`` after the demo shows its runs.
"""

from __future__ import annotations

import os
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

from rich.console import Console
from rich.table import Table

from kl_sync.app.clients import demo_emulator
from kl_sync.db import make_engine
from kl_sync.pipeline import delivery_rows
from kl_sync.settings import DEMO_DIR, EMULATOR_KEY, EMULATOR_PUBLIC_KEY, get_settings, prefect_defaults
from kl_sync.state.dead_letters import list_dead_letters
from kl_sync.state.migrate import open_state
from kl_sync.store.generate import generate_store


@dataclass(frozen=True)
class DemoPaths:
    root: Path

    @property
    def store_url(self) -> str:
        return f"sqlite:///{self.root / 'store.db'}"

    @property
    def state_url(self) -> str:
        return f"sqlite:///{self.root / 'state.db'}"

    @property
    def emulator_dir(self) -> Path:
        return self.root / "emulator"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def prepare_store(paths: DemoPaths, *, customers: int, seed: int, console: Console) -> bool:
    """Generate the demo store unless it exists; True when it was generated now."""
    store_file = paths.root / "store.db"
    if store_file.exists():
        console.print(f"store    reusing {store_file}")
        return False
    paths.root.mkdir(parents=True, exist_ok=True)
    counts = generate_store(make_engine(paths.store_url, sqlite_wal=False), customers_count=customers, seed=seed)
    console.print(
        f"store    generated {counts.customers} customers, {counts.orders:,} orders, "
        f"{counts.order_items:,} order items and {counts.system_log:,} log rows into {store_file}"
    )
    return True


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """The flow reads its settings from the environment, as a deployment would."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def _print_summary(console: Console, counts: dict, emulator, paths: DemoPaths, state_url: str) -> None:
    send = counts.get("send", {})
    table = Table(title="this run")
    for column in ("step", "read", "queued", "dead letters"):
        table.add_column(column, justify="right" if column != "step" else "left")
    for step in ("parse", "orders", "customers", "suppress", "send", "verify", "consent"):
        c = counts.get(step)
        if c:
            queued = f"{c['queued']:,}" if step not in ("send", "verify", "consent") else ""
            table.add_row(step, f"{c['rows_read']:,}", queued, f"{c['dead_letters']:,}")
    console.print(table)
    http = send.get("http_requests", {})
    console.print(
        f"sent     {send.get('sent_events', 0):,} events, {send.get('sent_profiles', 0):,} profiles, "
        f"{send.get('sent_suppressions', 0):,} suppressions and {send.get('sent_unsuppressions', 0):,} unsuppressions "
        f"in {http.get('requests', 0)} HTTP requests ({send.get('retries', 0)} to retry later)"
    )

    events = emulator.events()
    by_metric = Counter(e["metric"] for e in events)
    account = Table(title=f"the emulator's Klaviyo account ({paths.emulator_dir})")
    account.add_column("metric")
    account.add_column("events", justify="right")
    account.add_column("backfill", justify="right")
    backfill = Counter(e["metric"] for e in events if e.get("backfill"))
    for metric, n in sorted(by_metric.items()):
        account.add_row(metric, f"{n:,}", f"{backfill[metric]:,}")
    console.print(account)
    console.print(f"profiles {len(emulator.profiles()):,}; suppressed {len(emulator.suppressions()):,}")

    with open_state(state_url).connect() as conn:
        letters = list_dead_letters(conn)
    reasons = Counter(_reason_shape(d["reason"]) for d in letters)
    if reasons:
        dead = Table(title=f"open dead letters, all runs ({len(letters):,}), by reason")
        dead.add_column("reason")
        dead.add_column("rows", justify="right")
        for reason, n in reasons.most_common(8):
            dead.add_row(reason, f"{n:,}")
        console.print(dead)
    delivery = delivery_rows(open_state(state_url))
    verified = sum(row["verified"] for row in delivery)
    accepted = sum(row["sent"] + row["missing"] + row["verified"] for row in delivery)
    events_verified = sum(row["verified"] for row in delivery if row["metric"] is not None)
    console.print(
        f"verified {verified:,} of the {accepted:,} rows Klaviyo accepted, read back from the account "
        f"({events_verified:,} events with GET /api/events, {verified - events_verified:,} suppressions from "
        f"the profiles); {sum(row['missing'] for row in delivery):,} not there yet"
    )
    console.print(
        "next     [bold]kl-sync status[/bold], [bold]kl-sync dead-letters list[/bold] and [bold]kl-sync sync[/bold] "
        f"read this demo when nothing is configured (its state is {state_url}); the emulator's journal of "
        f"every request is {paths.emulator_dir / 'journal.jsonl'}; the notebooks in notebooks/ read this demo."
    )


def _reason_shape(reason: str) -> str:
    """'log 12: customer 7 has no e-mail' → 'customer has no e-mail', to group dead letters."""
    import re

    text = re.sub(r"^(log|order) \d+: ", "", reason)
    text = re.sub(r"\b(customer|order|log) \d+\b", r"\1", text)
    text = re.sub(r"'[^']*'", "'…'", text)
    return re.sub(r"\(.*\)$", "", text).strip()


def run_demo(*, customers: int = 300, seed: int = 1, fresh: bool = False, root: Path = DEMO_DIR) -> int:
    from kl_sync.emulator import running_emulator

    console = Console()
    paths = DemoPaths(root)
    if fresh:
        import shutil

        for name in ("store.db", "state.db"):
            _remove_sqlite(paths.root / name)
        shutil.rmtree(paths.emulator_dir, ignore_errors=True)
    generated = prepare_store(paths, customers=customers, seed=seed, console=console)
    prefect_defaults()
    with running_emulator(paths.emulator_dir, demo_emulator(rate_limits="real")) as emulator:
        console.print(f"klaviyo  local emulator at {emulator.base_url} (Klaviyo's rate limits on), data in {paths.emulator_dir}")
        if generated:
            _post_browser_events(paths, emulator, console)
            _plant_klaviyo_side_consent(paths, emulator, console)
        env = {
            "KL_SYNC_STORE_URL": paths.store_url,
            "KL_SYNC_STATE_URL": paths.state_url,
            "KLAVIYO_BASE_URL": emulator.base_url,
            "KLAVIYO_API_KEY": EMULATOR_KEY,
            # The emulator processes accepted events at once (no --processing-delay): verify now.
            "KL_SYNC_VERIFY_AFTER": "PT0S",
        }
        with _environment(env):
            from flows.sync import sync  # Prefect is imported here only
            from flows.prefect_server import temporary_prefect_server

            console.print("sync     running the kl-sync flow through Prefect (a temporary local server starts first)…")
            with temporary_prefect_server():
                counts = sync()
        _print_summary(console, counts, emulator, paths, paths.state_url)
        _print_consent(console, paths)
    return 0


#: What Klaviyo learns without the store, planted in a fresh demo account: the consent report shows them.
KLAVIYO_SIDE = ("UNSUBSCRIBE", "HARD_BOUNCE", "SPAM_COMPLAINT")


def _plant_klaviyo_side_consent(paths: DemoPaths, emulator, console: Console) -> None:
    """Three subscribed, active customers unsubscribe from a Klaviyo e-mail, bounce, complain."""
    from sqlalchemy import select

    from kl_sync.normalize import normalize_email
    from kl_sync.store.contract import customers
    from kl_sync.store.readers import store_engine

    query = (select(customers.c.email).where(customers.c.status == "Active", customers.c.email_subscribed.is_(True))
             .order_by(customers.c.id).limit(20))
    with store_engine(paths.store_url).connect() as conn:
        emails = [e for e in (normalize_email(row.email) for row in conn.execute(query)) if e][: len(KLAVIYO_SIDE)]
    for email, reason in zip(emails, KLAVIYO_SIDE):
        emulator.plant_suppression(email, reason)
    console.print(f"klaviyo  planted {len(emails)} Klaviyo-side suppressions the store does not know of "
                  f"({', '.join(KLAVIYO_SIDE)}): the consent report below lists them")


def _print_consent(console: Console, paths: DemoPaths) -> None:
    from kl_sync.steps.consent import consent_report
    from kl_sync.store.readers import store_engine

    report = consent_report(open_state(paths.state_url), store_engine(paths.store_url))
    table = Table(title=f"consent: subscribed in the store, not e-mailable in Klaviyo ({len(report)}; `kl-sync consent`)")
    for column in ("customer_id", "email", "reason", "suppressed_at"):
        table.add_column(column)
    for row in report:
        table.add_row(*(str(row[c]) for c in ("customer_id", "email", "reason", "suppressed_at")))
    console.print(table)


def _post_browser_events(paths: DemoPaths, emulator, console: Console) -> None:
    """What the store's pages sent from its customers' browsers (the requests their klaviyo.js
    makes), posted to the public client API, once."""
    from kl_sync.onsite.browser import plan_browser_requests, post_browser_requests

    settings = get_settings()
    planned = plan_browser_requests(make_engine(paths.store_url, sqlite_wal=False), seed=1, tz=settings.tz)
    outcomes = post_browser_requests(emulator.base_url, EMULATOR_PUBLIC_KEY, planned)
    sent = Counter(request.operation_id for request, o in zip(planned, outcomes) if o.status == "sent")
    console.print(
        f"browser  posted what the pages' klaviyo.js sent: {sent['create_client_event']:,} onsite events "
        f"(Started Checkout, Completed Signup, Cancelled Account) to /client/events and "
        f"{sent['create_client_profile']:,} identifies to /client/profiles"
    )
