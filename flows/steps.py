"""Each step alone, as a flow of its own, for ad-hoc runs and extra send workers; `flows/sync.py` runs
them all. ``python flows/steps.py STEP`` runs one (parse, orders, customers, suppress, send or verify); the
deployments ``kl-sync-send/send-outbox`` and ``kl-sync-verify/verify-delivery`` are
``flows/steps.py:send_outbox`` and ``flows/steps.py:verify_delivery``."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/steps.py`, or loaded by path as an entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kl_sync.settings import prefect_defaults

if __name__ == "__main__":
    prefect_defaults()

from flows.sync import step_flow, verify_delivery  # noqa: E402  (Prefect is imported after its defaults are set)

parse_log = step_flow("parse")
process_orders = step_flow("orders")
sync_customers = step_flow("customers")
suppress = step_flow("suppress")
send_outbox = step_flow("send")

FLOWS = {"parse": parse_log, "orders": process_orders, "customers": sync_customers, "suppress": suppress, "send": send_outbox,
         "verify": verify_delivery}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in FLOWS:
        sys.exit(f"usage: python flows/steps.py {{{','.join(FLOWS)}}}")
    from flows.prefect_server import temporary_prefect_server

    with temporary_prefect_server():  # one that dies with this process, as kl-sync sync --prefect's
        FLOWS[sys.argv[1]]()
