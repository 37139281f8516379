"""The emulated Klaviyo account: one SQLite file (``data_dir/emulator.db``) behind one lock.

Writes go through :meth:`Store.transaction`: a request's whole effect commits at once or not at all,
so a request rejected halfway (a conflict found while storing its 400th profile) leaves nothing
behind. Restarting the emulator over the same directory keeps the account: profiles, metrics,
events (and so ``unique_id`` dedupe), lists, suppressions and jobs.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from kl_sync.emulator.storage.reads import Reads
from kl_sync.emulator.storage.schema import connect
from kl_sync.emulator.storage.writes import Tx


class Store(Reads):
    """The account's data. Thread-safe: one connection, one lock, short transactions. Its reads are
    :class:`~kl_sync.emulator.storage.reads.Reads`; its writes, a :class:`Tx`."""

    def __init__(self, path: Path):
        self.path = Path(path)
        super().__init__(connect(self.path), threading.RLock())
        self._metric_cache: dict[str, str] = {}

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def plant_suppression(self, email: str, reason: str, at_iso: str | None = None) -> None:
        """A Klaviyo-side suppression (an unsubscribe, a bounce...) of ``email``: see
        :meth:`~kl_sync.emulator.server.EmulatorHandle.plant_suppression`."""
        from kl_sync.emulator.storage.profiles import ProfileWrite

        with self.transaction() as tx:
            (profile_id, _), = tx.upsert_profiles([ProfileWrite((), None, {"email": email}, {}, None)])
            tx.plant_suppression(email, profile_id, reason, at_iso)

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self._conn, self._metric_cache)
            try:
                yield tx
                tx.flush()
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            tx.committed()
