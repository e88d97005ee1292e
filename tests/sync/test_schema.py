"""The database: the Alembic migrations build exactly the schema the models describe, on
SQLite (in WAL mode) and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, text

from reference_builds.postgres import PrivateCluster
from sync_server.database import open_database, sqlite_url
from sync_server.models import Base, Kit


def test_migrations_match_the_models(tmp_path: Path) -> None:
    db = open_database(sqlite_url(tmp_path))
    try:
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            mode = connection.execute(text("PRAGMA journal_mode")).scalar()
    finally:
        db.close()
    assert diff == []
    assert mode == "wal"


def test_migrations_match_the_models_on_postgresql(postgres_cluster: PrivateCluster) -> None:
    db = open_database(postgres_cluster.new_database())
    try:
        with db.engine.connect() as connection:
            diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
            dialect = connection.dialect.name
    finally:
        db.close()
    assert dialect == "postgresql"
    assert diff == []


def test_a_kit_larger_than_2_gib_is_stored_on_postgresql(postgres_cluster: PrivateCluster) -> None:
    db = open_database(postgres_cluster.new_database())
    size = 5 * 1024**3
    try:
        with db.sessions.begin() as session:
            session.add(
                Kit(version="5.0.0", layout="ab", size=size, sha256="0" * 64, file_name="k.iso")
            )
        with db.sessions() as session:
            stored = session.scalars(select(Kit.size)).one()
    finally:
        db.close()
    assert stored == size
