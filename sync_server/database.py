"""The server's database: SQLite in WAL mode in the data directory by default, or any URL
SQLAlchemy knows (PostgreSQL for large fleets). `open_database` migrates it to the newest
schema with Alembic before anything else touches it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from enginekit.errors import HostError, UserInputError

MIGRATIONS = str(Path(__file__).with_name("migrations"))


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'sync.db'}"


def _sqlite_pragmas(dbapi_connection: Any, _connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


@dataclass(frozen=True)
class Database:
    engine: Engine
    sessions: sessionmaker[Session]
    # SQLite has one write lock per file: concurrent writers wait in its busy handler, which
    # sleeps in growing steps (the tail latency of a busy server). Writers of this process
    # queue on a lock instead and start the moment the previous one committed.
    _sqlite_writer: threading.Lock | None = field(default=None, repr=False)

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold around a write transaction (its commit included) on the request path."""
        if self._sqlite_writer is None:
            yield
            return
        with self._sqlite_writer:
            yield

    def close(self) -> None:
        self.engine.dispose()


def migrate(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def shown_url(url: str) -> str:
    """`url` fit for a message: its password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is named, not shown
        return "(the --database URL)"


def open_database(url: str) -> Database:
    """Connect to `url`, migrate it, and return the engine plus a session factory."""
    try:
        engine = create_engine(url)
    except ImportError as exc:
        raise HostError(
            f"--database {shown_url(url)}: its driver is not installed ({exc})",
            hint="install the driver into EngineKit's environment, e.g. pip install psycopg",
        ) from None
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several kinds for a bad URL
        raise UserInputError(
            f"--database {shown_url(url)}: not a database URL SQLAlchemy can use ({exc})",
            hint="e.g. sqlite:////srv/sync/sync.db or postgresql+psycopg://user@host/sync",
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate(engine)
    except OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise HostError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: {reason}",
            hint="check --database (server running, credentials, permissions on --data)",
        ) from None
    writer = threading.Lock() if engine.dialect.name == "sqlite" else None
    return Database(engine, sessionmaker(engine, expire_on_commit=False), writer)
