"""kl-sync's own database: cursors, outbox, order lifecycle, dead letters, run history.

The schema is owned by the Alembic migrations in ``migrations/``; these Core tables mirror the head
revision so code can build queries (a test checks they match what the migrations create).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Double,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql

from kl_sync.db import Id

metadata = MetaData()

# MySQL's TEXT stops at 64 KB; payloads and original rows may be larger (100 KB strings are legal).
LongText = Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
# Microsecond timestamps everywhere (MySQL's DATETIME drops fractions unless told).
Timestamp = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

#: Outbox statuses, a row's way through:
#:
#: - ``pending``: queued; claimable once ``next_attempt_at`` has passed (and no live lease holds it).
#: - ``sent``: Klaviyo accepted it (a 2xx, ``sends`` counts them). Not yet proof: a 202 means
#:   "submitted for processing". ``checked_at`` set: verification looked and did not find it yet.
#: - ``verified``: read back from Klaviyo (``verified_at``): delivered (kl_sync.state.delivery).
#: - ``dead``: given up on; its dead letter says why (rejected, too many failed sends, or accepted
#:   but never appeared after ``KL_SYNC_VERIFY_MAX_SENDS`` sends).
#:
#: A ``sent`` row still missing after the grace period goes back to ``pending`` to be sent again.
#: A suppression or unsuppression still pending or sent when a later one for the same e-mail replaces
#: it is closed as ``verified`` with ``last_error`` "superseded by <key>" (kl_sync.state.delivery).
PENDING, SENT, VERIFIED, DEAD = "pending", "sent", "verified", "dead"

cursors = Table(
    "cursors",
    metadata,
    Column("stream", String(64), primary_key=True),
    #: JSON list of the cursor column values of the last row consumed.
    Column("value", Text, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    #: Deterministic key (log:<id>, order:<id>:placed, profile:<id>:<updated_at>, suppress:<email>); also
    #: Klaviyo's unique_id for events.
    Column("key", String(255), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", LongText, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("lease_owner", String(64)),
    Column("lease_expires_at", Timestamp),
    Column("last_error", Text),
    Column("created_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    Column("run_id", String(36)),
    #: An event's Klaviyo metric and its own time (naive UTC), from its payload: what verification
    #: reads Klaviyo back by. NULL for rows that are no event (suppressions).
    Column("metric", String(128)),
    Column("event_time", Timestamp),
    #: How many times Klaviyo accepted this row (2xx); re-sends after verification missed it add one.
    Column("sends", Integer, nullable=False, default=0),
    #: When verification last looked for the row in Klaviyo and did not find it (NULL: not missed).
    Column("checked_at", Timestamp),
    Column("verified_at", Timestamp),
    UniqueConstraint("key", name="uq_outbox_key"),
    # The claim walks the pending rows in queue order and stops at its batch's last: an index on
    # (status, next_attempt_at) made SQLite read and sort every due row for each claim (~0.1 s at
    # 217,000 pending; migration 0012 says what it costs).
    Index("ix_outbox_queue", "status", "id"),
    Index("ix_outbox_verify", "status", "sent_at"),
    Index("ix_outbox_metric_time", "metric", "event_time"),
)

order_state = Table(
    "order_state",
    metadata,
    Column("order_id", Id, primary_key=True, autoincrement=False),
    Column("customer_id", Id),
    #: The store status last acted on: Placed, Cancelled or Completed.
    Column("status", String(16), nullable=False),
    Column("total", Numeric(12, 2)),
    Column("placed_key", String(255)),
    Column("final_key", String(255)),
    Column("updated_at", Timestamp, nullable=False),
)

#: Customers whose events were queued since the last suppression check (parse and orders add them
#: in the transaction of their events; the suppress step consumes them).
touched_customers = Table(
    "touched_customers",
    metadata,
    Column("customer_id", Id, primary_key=True, autoincrement=False),
    Column("touched_at", Timestamp, nullable=False),
)

#: Every e-mail kl-sync has seen for a customer (the customers and suppress steps keep it): whether
#: kl-sync last asked Klaviyo to suppress it, and the key of that last suppression or unsuppression.
customer_emails = Table(
    "customer_emails",
    metadata,
    #: Normalized (trimmed, lower-cased), as Klaviyo keys it.
    Column("email", String(320), primary_key=True),
    #: NULL for a suppression carried over from before the customers step.
    Column("customer_id", Id),
    Column("suppressed", Boolean, nullable=False),
    Column("consent_key", String(255)),
    Column("changed_at", Timestamp, nullable=False),
    Index("ix_customer_emails_customer", "customer_id"),
)

#: What Klaviyo says of the e-mails it cannot send marketing to (the consent read-back): the
#: suppression's reason and time, read from the profiles' subscriptions.
klaviyo_consent = Table(
    "klaviyo_consent",
    metadata,
    Column("email", String(320), primary_key=True),
    Column("profile_id", String(64)),
    Column("external_id", String(255)),
    #: HARD_BOUNCE, INVALID_EMAIL, SPAM_COMPLAINT, UNSUBSCRIBE or USER_SUPPRESSED; NULL once lifted.
    Column("reason", String(32)),
    Column("suppressed_at", Timestamp),
    Column("can_receive", Boolean, nullable=False),
    Column("read_at", Timestamp, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(255), nullable=False, index=True),
    #: The store row the key was built from (kl_sync.state.dead_letters.unit_of): what delivery looks
    #: letters up by.
    Column("unit", String(255), nullable=False, index=True),
    #: Which step gave up: parse, orders, customers, suppress, quality, send, verify.
    Column("step", String(32), nullable=False),
    Column("kind", String(32)),
    Column("reason", Text, nullable=False),
    #: The original store row or outbox payload, as JSON text.
    Column("original", LongText),
    Column("created_at", Timestamp, nullable=False),
    Column("run_id", String(36)),
    #: A letter's way (kl_sync.state.dead_letters): ``open``; ``replayed`` (its key queued again,
    #: ``replayed_at`` by ``replayed_run_id``; ``resent_at`` once Klaviyo accepted it); ``resolved``
    #: when its key is delivered (``resolved_at``, by ``resolved_run_id``), whatever sent it;
    #: ``discarded`` by a person (``discarded_at``, with a ``note``).
    Column("status", String(16), nullable=False, server_default="open"),
    Column("replayed_at", Timestamp),
    Column("replayed_run_id", String(36)),
    Column("resent_at", Timestamp),
    Column("resolved_at", Timestamp),
    Column("resolved_run_id", String(36)),
    Column("discarded_at", Timestamp),
    Column("note", Text),
    Index("ix_dead_letters_status", "status", "created_at"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("started_at", Timestamp, nullable=False),
    Column("finished_at", Timestamp),
    #: running, ok, failed, interrupted (a signal stopped it), abandoned (it died: its heartbeat stopped)
    Column("status", String(16), nullable=False),
    Column("steps", String(200), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    #: JSON object of counters (rows parsed, events sent, …).
    Column("counts", Text),
    Column("error", Text),
    #: When the run last said it was alive (its heartbeat thread, while it runs); NULL before 0010_leases.
    Column("heartbeat_at", Timestamp),
)

#: Named locks (kl_sync.state.locks): the store-reading steps of one run at a time take ``store``.
#: A lock whose heartbeat is older than its run's staleness limit belongs to a dead run.
locks = Table(
    "locks",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("acquired_at", Timestamp, nullable=False),
    Column("heartbeat_at", Timestamp, nullable=False),
)

#: The shared rate limiter (kl_sync.state.rate_limit): a row per endpoint that serialises acquiring,
#: and the wall-clock send times (epoch seconds) of the requests still inside a window.
rate_limit_endpoints = Table(
    "rate_limit_endpoints",
    metadata,
    Column("endpoint", String(64), primary_key=True),
    Column("acquisitions", BigInteger, nullable=False),
)

rate_limit_sends = Table(
    "rate_limit_sends",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("endpoint", String(64), nullable=False),
    Column("sent_at", Double, nullable=False),
    Index("ix_rate_limit_sends_endpoint_sent_at", "endpoint", "sent_at"),
)
