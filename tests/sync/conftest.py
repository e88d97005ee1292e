"""A real `engine-sync serve` on 127.0.0.1 (port 0: the kernel picks a free one) per test,
started as its own process and stopped with SIGTERM; clients talk to it over HTTP.

The server keeps its state in SQLite in its data directory, as by default; a test decorated
with `ON_BOTH_DATABASES` runs a second time against PostgreSQL: a private cluster started
once per test session (per xdist worker) and a database of its own per test."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from commands import engine_disk, engine_sync
from enginekit.process import spawn
from reference_builds.postgres import PrivateCluster, postgres_capability, start_cluster
from reference_builds.registered_disk import create_registered_disk
from sync_server.client import SyncClient

SQLITE, POSTGRESQL = "sqlite", "postgresql"
# The tests that matter for the database (serve, import, assign, check-in, tokens) run on
# both; the rest run on SQLite only, so the suite's time barely grows.
ON_BOTH_DATABASES = pytest.mark.parametrize("sync_database", [SQLITE, POSTGRESQL], indirect=True)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PrivateCluster]:
    """A private PostgreSQL server for the whole session, stopped at its end."""
    reason = postgres_capability()
    if reason is not None:
        pytest.skip(reason)
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def sync_database(request: pytest.FixtureRequest) -> str | None:
    """The server's --database URL: None (SQLite in its data directory) unless the test is
    parametrized with POSTGRESQL, then a new database on the session's cluster."""
    kind = getattr(request, "param", SQLITE)
    if kind == SQLITE:
        return None
    cluster: PrivateCluster = request.getfixturevalue("postgres_cluster")
    return cluster.new_database()


@dataclass(frozen=True)
class RunningServer:
    url: str
    data: Path
    log: Path
    admin_token: str
    database: str | None = None  # None: SQLite in `data`

    def admin(self) -> SyncClient:
        return SyncClient(self.url, self.admin_token)

    def client(self, token: str) -> SyncClient:
        return SyncClient(self.url, token)


def start_server(
    data: Path, log: Path, *extra: str | Path, launcher: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], str]:
    """`engine-sync serve --debug --data DATA EXTRA...` as its own process (started through
    `launcher`, e.g. nohup, when given), its log appended to `log`: the process and the URL
    from its "listening on" line. Give `--listen` in `extra` to choose the address; the
    default is a free port of 127.0.0.1."""
    if "--listen" not in extra:
        extra = ("--listen", "127.0.0.1:0", *extra)
    with log.open("ab") as log_file:
        # --debug: the most the server ever logs (its access log included) goes to the log
        # file, so the token tests see all of it.
        proc = spawn(
            [*launcher, sys.executable, "-m", "commands.engine_sync", "serve", "--debug",
             "--data", data, *extra],
            stderr=log_file.fileno(),
        )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline().decode()
    if not first.startswith("listening on "):
        proc.kill()
        proc.wait()
        raise AssertionError(log.read_text())
    return proc, first.split()[2]


def stop_server(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM, then check the stop was clean: exit 0 and "stopped" last."""
    proc.send_signal(signal.SIGTERM)
    try:
        rest = proc.communicate(timeout=60)[0].decode()
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    assert proc.returncode == 0, log.read_text()
    assert rest.strip().endswith("stopped")


@contextmanager
def running_server(
    data: Path, log: Path, *extra: str, database: str | None = None
) -> Iterator[RunningServer]:
    """`engine-sync serve --data DATA` with `extra` options (and `--database` when given) on a
    free port of 127.0.0.1 until the block ends; stopped with SIGTERM and checked clean."""
    if database:
        extra = (*extra, "--database", database)
    log.write_bytes(b"")
    proc, url = start_server(data, log, *extra)
    try:
        token = (data / "admin-token").read_text().strip()
        yield RunningServer(url, data, log, token, database)
    except BaseException:
        # The test failed (or skipped): stop the server all the same, and report the test's
        # own error rather than the stop's.
        with suppress(AssertionError):
            stop_server(proc, log)
        raise
    stop_server(proc, log)


@pytest.fixture
def sync_server(tmp_path: Path, sync_database: str | None) -> Iterator[RunningServer]:
    data, log = tmp_path / "sync-data", tmp_path / "server.log"
    with running_server(data, log, database=sync_database) as server:
        yield server


@pytest.fixture
def sync_cli(
    sync_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> Callable[..., tuple[int, str, str]]:
    """Run `engine-sync ARGS --server URL --token ADMIN` in-process: (status, out, err)."""

    def run(*args: str, token: str | None = None) -> tuple[int, str, str]:
        argv = [*args, "--server", sync_server.url, "--token", token or sync_server.admin_token]
        status = engine_sync.main(argv)
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return status, captured.out, captured.err

    return run


def import_kit(sync_cli: Callable[..., tuple[int, str, str]], iso: Path) -> tuple[int, str, str]:
    return sync_cli("import", str(iso), "--wait")


def registered_disk(path: Path, server: str, token: str, version: str = "4.5.0") -> Path:
    """A reference Engine registered with `server` through the real fresh-install path."""
    return create_registered_disk(path, version, 2 * 1024**3, server, token)


def agent(*args: str) -> int:
    return engine_disk.main(["agent", *args])
