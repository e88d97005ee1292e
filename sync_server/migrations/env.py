"""Alembic environment: runs the migrations on the connection `sync_server.database` hands in
(`config.attributes["connection"]`), so the server's own engine (and its SQLite pragmas) is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from sync_server.models import Base

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
