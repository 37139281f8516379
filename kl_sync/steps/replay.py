"""Replay dead letters: put their keys back in the queue, and say per key what happened.

Per key of the letters chosen:

- **queued**: its dead outbox row is back in the queue (failed attempts and sends reset), its letters
  ``replayed``; they resolve when the key is delivered (:mod:`kl_sync.state.delivery`);
- **delivered already**: the outbox holds the key verified: its letters are resolved now;
- **waiting**: the key is queued or sent already; its letters resolve when it is delivered;
- **still failing**: it cannot be queued (the reason says why); its letters stay open;
- **not found**: no unsettled letter has that key.

A row sent or verified is never sent twice: only dead rows are revived.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from kl_sync.state.dead_letters import Selection, mark_replayed, resolve_letters, select_letters
from kl_sync.state.delivery import DEAD, VERIFIED, outbox_statuses, revive_dead

QUEUED, DELIVERED, WAITING, FAILING, NOT_FOUND = "queued", "delivered already", "waiting", "still failing", "not found"


@dataclass(frozen=True)
class Replayed:
    """What replaying one key came to."""

    key: str
    outcome: str
    #: Why it is still failing (or what it waits for).
    reason: str | None = None

    def line(self) -> str:
        return self.outcome if self.reason is None else f"{self.outcome}: {self.reason}"


def replay_letters(state: Engine, selection: Selection, *, run_id: str | None = None) -> list[Replayed]:
    """Replay the unsettled letters of ``selection``; one outcome per key (a named key without a
    letter is ``not found``), in the order the keys were named, else the letters' order."""
    with state.connect() as conn:
        letters = select_letters(conn, selection)
    by_key: dict[str, list[int]] = {}
    for letter in letters:
        by_key.setdefault(letter["key"], []).append(letter["id"])
    order = list(dict.fromkeys(selection.keys)) if selection.keys else list(by_key)
    outcomes: list[Replayed] = []
    with state.begin() as conn:
        statuses = outbox_statuses(conn, list(by_key))
        for key in order:
            if key not in by_key:
                outcomes.append(Replayed(key, NOT_FOUND, "no open dead letter has this key"))
                continue
            status = statuses.get(key)
            if status == DEAD:
                revive_dead(conn, [key])
                mark_replayed(conn, [key], run_id=run_id)
                outcomes.append(Replayed(key, QUEUED))
            elif status == VERIFIED:
                resolve_letters(conn, by_key[key], run_id=run_id)
                outcomes.append(Replayed(key, DELIVERED, "Klaviyo holds it (verified): letter resolved"))
            elif status is not None:
                outcomes.append(Replayed(key, WAITING, f"its outbox row is {status}; the letter resolves when it "
                                                       "is delivered"))
            else:
                outcomes.append(Replayed(key, FAILING, "it never reached the outbox: fix its row in the store, "
                                                       "then `kl-sync sync --from-start`"))
    return outcomes
