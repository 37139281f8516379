"""kl-sync's own database: schema (Alembic), cursors, outbox, dead letters, run history."""

from kl_sync.state.migrate import current_revision, head_revision, open_state, upgrade
from kl_sync.state.store import ClaimedItem, OutboxItem

__all__ = ["ClaimedItem", "OutboxItem", "current_revision", "head_revision", "open_state", "upgrade"]
