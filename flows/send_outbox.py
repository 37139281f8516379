"""The send step alone, as its own flow; `flows/sync.py` runs all the steps."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/send_outbox.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.sync import step_flow

send_outbox = step_flow("send")

if __name__ == "__main__":
    send_outbox()
