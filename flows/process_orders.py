"""The orders step alone, as its own flow; `flows/sync.py` runs all the steps."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/process_orders.py`, or loaded by path as an entrypoint
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kl_sync.settings import prefect_defaults

if __name__ == "__main__":
    prefect_defaults()

from flows.sync import step_flow  # noqa: E402  (Prefect is imported after its defaults are set)

process_orders = step_flow("orders")

if __name__ == "__main__":
    process_orders()
