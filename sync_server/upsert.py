"""INSERT ... ON CONFLICT in the session's own SQL dialect (SQLite and PostgreSQL both have
it, each through its own SQLAlchemy construct)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` (a model class or Table) that offers on_conflict_do_nothing()."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"INSERT ... ON CONFLICT on {dialect}")
