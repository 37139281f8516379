"""Bulk bodies that remember where each input row went, and the one loop that sends them.

A :class:`Batch` is one request body plus ``positions``: the index path of every item inside the body
(``(17, 2)`` for the third event of the 18th profile entry) mapped to the item's position in the
caller's input. When Klaviyo answers 400 with ``source.pointer`` =
``/data/attributes/events-bulk-create/data/17/attributes/events/data/2``, :meth:`Batch.positions_for_pointer`
names exactly that input row; a pointer at ``.../data/17/attributes/profile/...`` names every event
of entry 17; a pointer at no item names none.

:func:`send_batches` turns the HTTP outcome of each batch into one :class:`ItemOutcome` per input row,
in input order: ``sent``, ``rejected`` (with Klaviyo's reason) or ``retry`` (with why).
"""

from __future__ import annotations

import json as jsonlib
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kl_sync.klaviyo.client import KlaviyoClient, encode_body
from kl_sync.klaviyo.errors import RejectedError, RetryableError, describe_error, error_pointer
from kl_sync.klaviyo.limits import EndpointLimits

T = TypeVar("T")

OutcomeStatus = Literal["sent", "rejected", "retry"]

#: How many times the unrejected rest of a batch is re-sent after Klaviyo named some of its items.
MAX_RESENDS = 3

_INDEX = re.compile(r"\d+")


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one input row: sent, rejected for good (dead letter), or to be retried later."""

    status: OutcomeStatus
    reason: str | None = None


SENT = ItemOutcome("sent")


@dataclass(frozen=True)
class Batch:
    """One request body and, for each item in it, its index path -> its position in the input."""

    #: The request body as built; None when the builder kept only its encoding (``encoded``).
    built: dict[str, Any] | None
    positions: Mapping[tuple[int, ...], int]
    #: The JSON pointer text before each index of an item's path, outermost first.
    pointer_prefixes: tuple[str, ...]
    #: ``len(encode_body(body))``: the bytes on the wire.
    size: int
    #: ``encode_body(body)``, when the builder assembled it from encodings it made anyway.
    encoded: bytes | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The request body: as built, or read back from the bytes sent. A sender holds a prepared
        batch ahead and one in flight, and the built dicts of 20,000 events took four times the
        memory of their encoding (benchmarks/README.md, "Memory"), so the event builder keeps the
        bytes only: what is sent is exactly those bytes, and this decodes to the same body."""
        if self.built is not None:
            return self.built
        if self.encoded is None:
            raise ValueError("a batch holds its body, its encoding, or both")
        return jsonlib.loads(self.encoded)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def input_positions(self) -> list[int]:
        """Input positions of this batch's items, in body order."""
        return [self.positions[path] for path in sorted(self.positions)]

    def pointer(self, index_path: tuple[int, ...]) -> str:
        """The JSON pointer of the item at ``index_path`` (inverse of :meth:`index_path`)."""
        return "".join(f"{prefix}{index}" for prefix, index in zip(self.pointer_prefixes, index_path, strict=True))

    def index_path(self, pointer: str) -> tuple[int, ...]:
        """The item indices a JSON pointer goes through: ``(17, 2)``, ``(17,)``, or ``()`` for none."""
        path: list[int] = []
        rest = pointer
        for prefix in self.pointer_prefixes:
            if not rest.startswith(prefix):
                break
            match = _INDEX.match(rest, len(prefix))
            if match is None:
                break
            rest = rest[match.end():]
            if rest and not rest.startswith("/"):
                return ()
            path.append(int(match.group()))
        return tuple(path)

    def positions_for_pointer(self, pointer: str | None) -> list[int]:
        """Input positions an error pointer names: one item, every item under an entry, or none."""
        if not pointer:
            return []
        path = self.index_path(pointer)
        if not path:
            return []
        depth = len(path)
        if depth == len(self.pointer_prefixes):
            position = self.positions.get(path)
            return [] if position is None else [position]
        return [position for key, position in sorted(self.positions.items()) if key[:depth] == path]


def pack_items(
    items: Sequence[dict[str, Any]],
    envelope: Callable[[list[dict[str, Any]]], dict[str, Any]],
    pointer_prefix: str,
    *,
    max_items: int,
    max_bytes: int | None,
) -> list[Batch]:
    """Chunk already-built items into bodies ``envelope(items)`` of at most ``max_items`` and ``max_bytes``.

    Sizes are counted, not re-serialized per item: the body's bytes are the empty envelope's, plus each
    item's, plus one comma between items. An item too big for any body still gets a batch of its own,
    so Klaviyo's answer (a rejection) becomes that row's outcome rather than the row vanishing.
    """
    if max_items < 1:
        raise ValueError(f"max_items must be at least 1, not {max_items}")
    empty_size = len(encode_body(envelope([])))
    batches: list[Batch] = []
    chunk: list[dict[str, Any]] = []
    chunk_positions: list[int] = []
    size = empty_size

    def close() -> None:
        body = envelope(chunk)
        positions = {(index,): position for index, position in enumerate(chunk_positions)}
        batches.append(Batch(body, positions, (pointer_prefix,), size))

    for position, item in enumerate(items):
        item_size = len(encode_body(item))
        extra = item_size + (1 if chunk else 0)
        if chunk and (len(chunk) >= max_items or (max_bytes is not None and size + extra > max_bytes)):
            close()
            chunk, chunk_positions, size = [], [], empty_size
            extra = item_size
        chunk.append(item)
        chunk_positions.append(position)
        size += extra
    if chunk:
        close()
    return batches


def send_batches(
    client: KlaviyoClient,
    items: Sequence[T],
    build: Callable[[Sequence[T]], list[Batch]],
    endpoint: EndpointLimits,
    *,
    path: str | None = None,
    max_resends: int = MAX_RESENDS,
    batches: Sequence[Batch] | None = None,
    settle: Callable[[Batch, Any], Mapping[int, ItemOutcome]] | None = None,
) -> list[ItemOutcome]:
    """POST every batch ``build(items)`` makes (or ``batches``, when the caller built them ahead) to
    ``endpoint`` (at ``path``, when its path has a parameter filled in); one outcome per item, in
    input order.

    - 2xx: every item of the batch is ``sent``.
    - 4xx whose errors point at items: those items are ``rejected`` with Klaviyo's detail and pointer;
      the rest is rebuilt and re-sent (at most ``max_resends`` times, then ``retry``).
    - 4xx pointing at no item: the whole batch is ``rejected`` with Klaviyo's message.
    - :class:`RetryableError` (after the client's own attempts): the whole batch is ``retry``.
    - ``settle(batch, response)``, after a 2xx: outcomes by the batch's own positions that override
      ``sent`` (a bulk import job's import errors reject the profiles they name).
    - :class:`AuthError` propagates: nothing else can succeed with that key. Rows already sent are
      sent again by the next run, which the deterministic ``unique_id`` makes harmless.
    """
    outcomes: list[ItemOutcome | None] = [None] * len(items)
    # (batch, its positions -> input positions or None when they are the same, times re-sent)
    first_round = build(items) if batches is None else batches
    work: deque[tuple[Batch, Sequence[int] | None, int]] = deque((batch, None, 0) for batch in first_round)
    while work:
        batch, to_input, resends = work.popleft()
        # Batch-local positions -> input positions (a re-sent batch was built from a subset).
        rows = {p: p if to_input is None else to_input[p] for p in batch.input_positions}
        try:
            # The bytes when the builder kept them (the body is then not decoded only to be ignored).
            response = client.post(path or endpoint.path, batch.built if batch.encoded is None else None,
                                   endpoint=endpoint.operation_id, encoded=batch.encoded)
        except RetryableError as err:
            outcomes_of = dict.fromkeys(rows.values(), ItemOutcome("retry", err.message))
        except RejectedError as err:
            outcomes_of, rest = _rejections(batch, rows, err)
            if rest and resends >= max_resends:
                reason = f"not re-sent after {resends + 1} partial rejections of its batch; last: {err.message}"
                outcomes_of.update(dict.fromkeys(rest, ItemOutcome("retry", reason)))
            elif rest:
                # Re-send the rest now (front of the queue), as freshly built bodies with new indices.
                for sub in reversed(build([items[row] for row in rest])):
                    work.appendleft((sub, rest, resends + 1))
        else:
            outcomes_of = dict.fromkeys(rows.values(), SENT)
            if settle is not None:
                for position, outcome in settle(batch, response).items():
                    outcomes_of[rows[position]] = outcome
        for row, outcome in outcomes_of.items():
            outcomes[row] = outcome
    missing = [index for index, outcome in enumerate(outcomes) if outcome is None]
    if missing:
        raise RuntimeError(f"batch builder lost input rows {missing[:10]}")
    return outcomes  # type: ignore[return-value]


def _rejections(batch: Batch, rows: Mapping[int, int], err: RejectedError) -> tuple[dict[int, ItemOutcome], list[int]]:
    """A 4xx for ``batch``: the outcomes of the input rows its errors point at, and the rows it did not
    name (to re-send). An answer pointing at no item rejects the whole batch with Klaviyo's message."""
    reasons: dict[int, list[str]] = {}
    for error in err.errors:
        for position in batch.positions_for_pointer(error_pointer(error)):
            reasons.setdefault(position, []).append(describe_error(error))
    if not reasons:
        return dict.fromkeys(rows.values(), ItemOutcome("rejected", err.message)), []
    rejected = {rows[position]: ItemOutcome("rejected", "; ".join(texts)) for position, texts in reasons.items()}
    return rejected, [row for position, row in rows.items() if position not in reasons]
