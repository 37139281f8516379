"""Progress for long steps: a bar on a terminal, nothing at all in logs and pipes."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: The one live display of this process and how many steps draw on it: the sender runs beside the
#: store-reading steps, and a terminal holds one live display at a time, so their bars share it.
_shared: dict[str, Any] = {"progress": None, "users": 0}
_lock = threading.Lock()


@contextmanager
def step_progress(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draws a transient rich bar only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with _lock:
        if _shared["progress"] is None:
            columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn()]
            _shared["progress"] = Progress(*columns, console=Console(stderr=True), transient=True)
            _shared["progress"].start()
        progress = _shared["progress"]
        _shared["users"] += 1
        task = progress.add_task(description, total=total)
    try:
        yield lambda n: progress.advance(task, n)
    finally:
        with _lock:
            progress.remove_task(task)
            _shared["users"] -= 1
            if _shared["users"] == 0:
                progress.stop()
                _shared["progress"] = None
