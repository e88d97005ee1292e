"""The server's database: SQLite in WAL mode in the data directory by default, or any URL
SQLAlchemy knows (PostgreSQL for large fleets). `open_database` migrates it to the newest
schema with Alembic before anything else touches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from enginekit.errors import UserInputError

MIGRATIONS = str(Path(__file__).with_name("migrations"))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'sync.db'}"


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]

    def close(self) -> None:
        self.engine.dispose()


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def open_database(url: str) -> Database:
    """Connect to `url`, migrate it, and return the engine plus a session factory."""
    try:
        engine = create_engine(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL
        raise UserInputError(
            f"--database {url!r}: not a database URL SQLAlchemy can use ({exc})",
            hint="e.g. sqlite:////srv/sync/sync.db or postgresql+psycopg://user@host/sync",
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return Database(engine, sessionmaker(engine, expire_on_commit=False))
