"""The emulated account's storage: one SQLite file behind one lock.

- :mod:`.schema`: the tables, and what a stored profile holds.
- :mod:`.writes`: the write transaction (:class:`Tx`) and the events it stores (:class:`EventWrite`).
- :mod:`.profiles`: a transaction's profiles: found by id or identifier, merged, written back once
  (:class:`ProfileWrite` is a profile as a request sends it).
- :mod:`.reads`: pages, rows by id and whole-account snapshots (:class:`Reads`).
- :mod:`.store`: :class:`Store`, the two together over one connection.
- :mod:`.values`: ids, times and identifier keys as stored.
"""

from kl_sync.emulator.storage.store import Store

__all__ = ["Store"]
