"""The ``kl-sync emulator`` command: serve the local Klaviyo in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys

from kl_sync.emulator.config import EmulatorConfig
from kl_sync.emulator.faults import DEFAULT_MIX, FaultSpec
from kl_sync.settings import DEMO_DIR, EMULATOR_KEY, EMULATOR_PORT, EMULATOR_PUBLIC_KEY

# The defaults serve the demo's account (what `make demo` sent), where the notebooks look for it.
DEFAULT_PORT = EMULATOR_PORT
DEFAULT_DATA_DIR = str(DEMO_DIR / "emulator")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default: {DEFAULT_PORT}; 0 = any free)")
    parser.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help=f"account data and journal (default: {DEFAULT_DATA_DIR})"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"accepted private API key; repeat for several (default: {EMULATOR_KEY})",
    )
    parser.add_argument("--forbidden-key", action="append", dest="forbidden_keys", metavar="KEY",
                        help="a key answered with 403 permission_denied; repeatable")
    parser.add_argument("--public-key", default=EMULATOR_PUBLIC_KEY,
                        help=f"company_id accepted by /client/* (default: {EMULATOR_PUBLIC_KEY})")
    parser.add_argument("--rate-limits", choices=("real", "off"), default="off",
                        help="enforce Klaviyo's per-endpoint burst/steady windows (default: off)")
    parser.add_argument("--rate-scale", type=float, default=1.0,
                        help="shorten every rate window by this factor, e.g. 10 (default: 1)")
    parser.add_argument("--faults", type=float, default=0.0, metavar="RATE",
                        help="share of write requests that fail on purpose, 0-1 (default: 0)")
    parser.add_argument("--fault-mix", default=",".join(DEFAULT_MIX), metavar="KINDS",
                        help="comma-separated kinds, optionally KIND:WEIGHT: HTTP statuses, slow, drop, "
                             f"drop_after_commit (default: {','.join(DEFAULT_MIX)})")
    parser.add_argument("--fault-seed", type=int, default=0,
                        help="seed of the fault sequence and of the lost events (default: 0)")
    parser.add_argument("--slow-seconds", type=float, default=2.0, help="delay of a 'slow' fault (default: 2)")
    parser.add_argument("--processing-delay", type=float, default=0.0, metavar="SECONDS",
                        help="seconds after a 202 before an event can be read back, as Klaviyo processes "
                             "events after accepting them (default: 0)")
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS",
                        help="round trip of every request, as over a real network, e.g. 0.25 (default: 0)")
    parser.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS",
                        help="each round trip drawn from latency ± this, seeded by --fault-seed (default: 0)")
    parser.add_argument("--lose", type=float, default=0.0, metavar="RATE",
                        help="share of accepted events silently never processed, 0-1 (default: 0)")


def parse_fault_mix(text: str) -> dict[str, float]:
    """``"429,500:2,drop"`` -> ``{"429": 1.0, "500": 2.0, "drop": 1.0}``."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, weight = part.partition(":")
        mix[kind.strip()] = float(weight) if weight else 1.0
    return mix


def config_from(args: argparse.Namespace) -> EmulatorConfig:
    """The emulator's options from the command line (a ValueError names a bad one)."""
    faults = None
    if args.faults > 0:
        faults = FaultSpec(
            rate=args.faults,
            mix=parse_fault_mix(args.fault_mix),
            seed=args.fault_seed,
            slow_seconds=args.slow_seconds,
        )
    return EmulatorConfig(
        api_keys=tuple(args.api_keys or (EMULATOR_KEY,)),
        forbidden_keys=tuple(args.forbidden_keys or ()),
        public_key=args.public_key,
        rate_limits=args.rate_limits,
        rate_scale=args.rate_scale,
        faults=faults,
        processing_delay=args.processing_delay,
        lose=args.lose,
        lose_seed=args.fault_seed,
        latency=args.latency,
        jitter=args.jitter,
    )


def run(args: argparse.Namespace) -> int:
    """Serve a local Klaviyo emulator until interrupted."""
    from kl_sync.emulator.app import create_app
    from kl_sync.emulator.server import serve_forever

    try:
        app = create_app(args.data_dir, config_from(args))
    except ValueError as exc:
        print(f"kl-sync emulator: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(
        f"Klaviyo emulator on http://{args.host}:{args.port} (data: {args.data_dir}, "
        f"rate limits: {args.rate_limits}, faults: {args.faults:g}, processing delay: {args.processing_delay:g} s, "
        f"lost: {args.lose:g}, latency: {args.latency:g} ± {args.jitter:g} s)",
        file=sys.stderr,
    )
    try:
        serve_forever(app, args.host, args.port)
    except OSError as exc:
        print(f"kl-sync emulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0
