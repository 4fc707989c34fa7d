"""Alembic environment: migrate on the connection (and inside the transaction) the store hands in.

The store holds the schema lock (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL).
"""

from __future__ import annotations

from alembic import context

from station.results.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
)
with context.begin_transaction():
    context.run_migrations()
