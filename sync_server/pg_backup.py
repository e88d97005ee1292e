"""A PostgreSQL database in a Synchronizer backup: `pg_dump` in its custom format out, and
`pg_restore` back into a new, empty database (Debian's postgresql-client brings both).

The dump reads the exported snapshot of a REPEATABLE READ transaction that stays open while
it runs, so the kit list and schema revision written into the manifest are those of the very
state the dump holds. The connection comes from the server's --database URL; a password goes
to the programs in PGPASSWORD, never on their command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from psycopg.conninfo import make_conninfo
from sqlalchemy import Connection, create_engine, inspect, make_url, text

from enginekit.errors import CommandFailed, HostError, UserInputError
from enginekit.process import require_tool, run
from sync_server.database import shown_url

DUMP = "sync.pgdump"  # the name of the dump inside the archive
PACKAGE = "postgresql-client"
TIMEOUT = 3600.0

T = TypeVar("T")


class DumpRefused(UserInputError):
    """pg_restore cannot read the dump: the backup is damaged."""

    default_hint = "use another backup (engine-sync backup makes one); nothing was changed"


@dataclass(frozen=True)
class Connect:
    """How libpq's programs reach the database of a SQLAlchemy URL."""

    conninfo: str
    env: dict[str, str]


def connect_options(url: str) -> Connect:
    parsed = make_url(url)
    params: dict[str, str] = {
        key: str(value) for key, value in parsed.query.items() if isinstance(value, str)
    }
    for key, value in (
        ("host", parsed.host),
        ("port", parsed.port),
        ("user", parsed.username),
        ("dbname", parsed.database),
    ):
        if value is not None:
            params[key] = str(value)
    env = {"PGPASSWORD": parsed.password} if parsed.password else {}
    return Connect(make_conninfo(**params), env)


def _first_error(exc: CommandFailed) -> str:
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or [f"exit status {exc.returncode}"])[0]


def dump(url: str, dest: Path, facts: Callable[[Connection], T]) -> T:
    """Dump the database at `url` into `dest`; `facts` reads the same snapshot."""
    pg_dump = require_tool("pg_dump", PACKAGE)
    engine = create_engine(url, isolation_level="REPEATABLE READ")
    try:
        with engine.connect() as connection, connection.begin():
            snapshot = str(connection.scalar(text("SELECT pg_export_snapshot()")))
            found = facts(connection)
            target = connect_options(url)
            try:
                run(
                    [
                        pg_dump,
                        "--format=custom",
                        "--no-owner",
                        "--no-privileges",
                        f"--snapshot={snapshot}",
                        "--file",
                        dest,
                        "--dbname",
                        target.conninfo,
                    ],
                    env=target.env,
                    timeout=TIMEOUT,
                )
            except CommandFailed as exc:
                raise HostError(
                    f"pg_dump could not back up {shown_url(url)}: {_first_error(exc)}",
                    hint=f"pg_dump must be as new as the PostgreSQL server (apt-get install "
                    f"{PACKAGE} of its version); the server's log says more",
                ) from None
    finally:
        engine.dispose()
    return found


def check_empty(url: str) -> None:
    """Refuse a target database that holds tables already: restore never overwrites."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    except Exception as exc:  # noqa: BLE001 - any connection failure is one line
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise HostError(
            f"--database {shown_url(url)}: cannot connect ({reason})",
            hint="create a new, empty database (createdb) and check the URL",
        ) from None
    finally:
        engine.dispose()
    if tables:
        raise UserInputError(
            f"--database {shown_url(url)}: not empty ({len(tables)} tables, e.g. "
            f"{sorted(tables)[0]}); restore never overwrites a database",
            hint="create a new, empty database (createdb) and restore into it",
        )


def restore(dump_file: Path, url: str, source: str) -> None:
    """Load `dump_file` into the empty database at `url` in one transaction: all or nothing."""
    pg_restore = require_tool("pg_restore", PACKAGE)
    target = connect_options(url)
    try:
        run([pg_restore, "--list", dump_file], timeout=TIMEOUT)
    except CommandFailed as exc:
        raise DumpRefused(f"{source}: its database dump is damaged ({_first_error(exc)})") from None
    try:
        run(
            [
                pg_restore,
                "--exit-on-error",
                "--single-transaction",
                "--no-owner",
                "--no-privileges",
                "--dbname",
                target.conninfo,
                dump_file,
            ],
            env=target.env,
            timeout=TIMEOUT,
        )
    except CommandFailed as exc:
        raise DumpRefused(
            f"{source}: pg_restore could not load its database dump into {shown_url(url)} "
            f"({_first_error(exc)})",
            hint="the database was left as it was (one transaction); use another backup, or "
            "check that the database is new and empty",
        ) from None
