"""A private PostgreSQL server for tests and benchmarks: Debian's `postgresql` binaries, a
cluster made with initdb in a temporary directory, listening on 127.0.0.1 on a free port
(and a Unix socket inside its own directory), trust authentication, stopped and removed on
close. No system service is used or needed. PostgreSQL refuses to run as root: as root the
cluster belongs to the `postgres` OS user (Debian's package makes it) and its programs run
through runuser.

`postgres_capability()` says why a cluster cannot be made here (None when it can);
`PrivateCluster.new_database()` gives each test a database of its own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from enginekit.errors import MissingCapability
from enginekit.process import is_root, run

OS_USER = "postgres"
DB_USER = "enginekit"
START_TIMEOUT = 120.0


@cache
def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL `bin` directory that has initdb, pg_ctl and postgres."""
    found = []
    for initdb in Path("/usr/lib/postgresql").glob("*/bin/initdb"):
        major = initdb.parent.parent.name
        if major.isdigit() and (initdb.parent / "pg_ctl").exists():
            found.append((int(major), initdb.parent))
    return max(found)[1] if found else None


@cache
def postgres_capability() -> str | None:
    """None if a private cluster can be made here, else the reason it cannot."""
    if postgres_bin() is None:
        return "PostgreSQL is not installed (run tools/setup: apt-get install postgresql)"
    if is_root():
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"no {OS_USER!r} OS user to run PostgreSQL as (apt-get install postgresql)"
        if shutil.which("runuser") is None:
            return "runuser is not installed (apt-get install util-linux)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PrivateCluster:
    """A running cluster; `close()` stops it (fast shutdown) and removes its directory."""

    directory: Path
    port: int
    _databases: int = field(default=0)

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        bindir = postgres_bin()
        assert bindir is not None
        argv: list[Path | str] = [
            bindir / "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            DB_USER,
            "-d",
            database,
            "-c",
            sql,
        ]
        return run(argv, timeout=60).stdout.decode()

    def new_database(self, prefix: str = "sync") -> str:
        """A new, empty database; its SQLAlchemy URL."""
        self._databases += 1
        name = f"{prefix}_{os.getpid()}_{self._databases}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        bindir = postgres_bin()
        assert bindir is not None
        try:
            _as_owner([bindir / "pg_ctl", "stop", "-D", self.data, "-m", "fast", "-w"], 60)
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def _as_owner(argv: list[Path | str], timeout: float) -> None:
    prefix: list[Path | str] = ["runuser", "-u", OS_USER, "--"] if is_root() else []
    run([*prefix, *argv], timeout=timeout)


def start_cluster(parent: Path | None = None, *, durable: bool = False) -> PrivateCluster:
    """initdb a cluster in a new directory under `parent` (default: TMPDIR) and start it.

    Without `durable`, fsync and synchronous commit are off: a test cluster is thrown away,
    so losing it to a power cut costs nothing and every commit is faster."""
    reason = postgres_capability()
    if reason is not None:
        raise MissingCapability(reason, hint="run tools/setup")
    bindir = postgres_bin()
    assert bindir is not None
    directory = Path(tempfile.mkdtemp(prefix="enginekit-pg-", dir=parent))
    try:
        if is_root():
            owner = pwd.getpwnam(OS_USER)
            os.chown(directory, owner.pw_uid, owner.pw_gid)
            # The OS user must reach the directory through its parents.
            for up in directory.parents:
                if up == Path("/"):
                    break
                mode = up.stat().st_mode
                if not mode & 0o001:
                    raise MissingCapability(
                        f"{up}: the {OS_USER} user cannot enter it (mode {oct(mode & 0o777)})",
                        hint="set TMPDIR to a directory every user may enter, e.g. /tmp",
                    )
        initdb: list[Path | str] = [
            bindir / "initdb",
            "-D",
            directory / "data",
            "-U",
            DB_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
        ]
        if not durable:
            initdb.append("--no-sync")
        _as_owner(initdb, 120)
        port = _free_port()
        options = [
            "-c listen_addresses=127.0.0.1",
            f"-c port={port}",
            f"-c unix_socket_directories={directory}",
            "-c max_connections=200",
        ]
        if not durable:
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        _as_owner(
            [
                bindir / "pg_ctl",
                "start",
                "-D",
                directory / "data",
                "-l",
                directory / "server.log",
                "-w",
                "-t",
                str(int(START_TIMEOUT)),
                "-o",
                " ".join(options),
            ],
            START_TIMEOUT + 10,
        )
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return PrivateCluster(directory, port)


@contextlib.contextmanager
def private_cluster(
    parent: Path | None = None, *, durable: bool = False
) -> Iterator[PrivateCluster]:
    cluster = start_cluster(parent, durable=durable)
    try:
        yield cluster
    finally:
        cluster.close()
