"""The parse step alone, as its own flow; `flows/sync.py` runs all the steps."""

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python flows/parse_log.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flows.sync import step_flow

parse_log = step_flow("parse")

if __name__ == "__main__":
    parse_log()
