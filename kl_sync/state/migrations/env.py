"""Alembic environment: runs on the connection kl-sync hands it (see kl_sync.state.migrate)."""

from alembic import context

from kl_sync.state.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
