"""`engine-sync serve`: open (and migrate) the database, make sure the admin token exists,
bind the listening socket ourselves (so a port in use is one clear line, and port 0 works),
hold the data directory (one server per directory, `data_lock`), then run the API under
uvicorn until SIGINT or SIGTERM, and shut the task pool down cleanly.

With `upstream`, the server is a remote (branch-office) server of that main server: no
database of its own, its data directory holds the relayed kits (`kits/`); it forwards its
computers' check-ins, serves their downloads and runs its relays (`sync_server.relay`).
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn

from enginekit.errors import HostError, UserInputError
from sync_server.data_lock import hold_data_dir

if TYPE_CHECKING:
    from sync_server.database import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8470
    database: str | None = None
    scan_interval: float = 10.0
    checkin_interval: float = 60.0
    upstream: str | None = None  # a remote server: the main server's URL
    upstream_token: str | None = None  # its site token (engine-sync site add)
    bandwidth: int | None = None  # bytes per second for its relays; None: no limit
    contact_interval: float = 10.0  # seconds between a remote's contacts with its main


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UserInputError(
            f"--listen {text!r}: not HOST:PORT", hint="e.g. --listen 127.0.0.1:8470"
        )
    return host.strip("[]"), int(port)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise UserInputError(
                f"--listen {host}:{port}: the port is already in use",
                hint="stop the other server, or choose another port with --listen",
            ) from None
        raise HostError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose an address of this machine and a free port with --listen HOST:PORT",
        ) from None
    sock.listen(128)
    return sock


def prepare_data_dir(data: Path) -> None:
    """Make `data` and its FileImport folder and prove the server may write there: one
    `error:` line naming the directory, never a traceback."""
    try:
        (data / "FileImport").mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=data):
            pass
    except OSError as exc:
        where = exc.filename or data
        raise UserInputError(
            f"--data {data}: cannot write {where} ({exc.strerror})",
            hint="give a directory this user may create and write, or fix its permissions",
        ) from None


def serve(options: ServeOptions) -> None:
    data = options.data_dir
    if data.exists() and not data.is_dir():
        raise UserInputError(
            f"--data {data}: not a directory", hint="give a directory for the server's data"
        )
    sock = bind(options.host, options.port)
    with ExitStack() as held:
        held.callback(sock.close)
        prepare_data_dir(data)
        held.enter_context(hold_data_dir(data))
        if options.upstream is not None:
            _run_remote(options, data, sock)
            return
        # Imported here: a remote server has no database and starts faster without them.
        from sync_server.database import open_database, sqlite_url

        db = open_database(options.database or sqlite_url(data))
        held.callback(db.close)
        _run(options, data, db, sock)


def _run(options: ServeOptions, data: Path, db: Database, sock: socket.socket) -> None:
    from sync_server.api import build_app
    from sync_server.state import FileImportWatcher, ServerState, ensure_admin_token
    from sync_server.tasks import TaskRunner

    runner = TaskRunner(db, data / "kits")
    state = ServerState(data, db, runner, checkin_interval=options.checkin_interval)
    token_file = ensure_admin_token(data, db)
    watcher = FileImportWatcher(state, options.scan_interval)
    host, port = sock.getsockname()[:2]
    # log_config=None: uvicorn's loggers (access log included) go through ours, to stderr;
    # stdout carries only the "listening on" and "stopped" lines.
    config = uvicorn.Config(build_app(state), log_config=None, access_log=True)
    server = uvicorn.Server(config)
    watcher.start()
    try:
        serve_until_stopped(server, sock, f"http://{host}:{port} (admin token in {token_file})")
    finally:
        watcher.stop()
        runner.shutdown()
        _say("stopped")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_until_stopped(server: uvicorn.Server, sock: socket.socket, where: str) -> None:
    """Print the listening line (scripts and the tests read it to learn the address), then
    serve until SIGINT or SIGTERM."""
    previous = signal.getsignal(signal.SIGHUP)
    if previous is not signal.SIG_IGN:
        # A closed terminal ends the server at once (the default action): its state is in
        # the database and the data directory's lock goes with the process. Turning SIGHUP
        # into uvicorn's graceful shutdown hung once under load in shutdown; SIGTERM is the
        # clean stop. Under nohup SIGHUP stays ignored.
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        # The line is inside: a SIGTERM sent as soon as it is read (before uvicorn has its
        # own signal handlers) is the same clean stop as one sent later.
        _say(f"listening on {where}")
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal it
        # caught: that is a clean stop, not an interruption.
        pass
    finally:
        signal.signal(signal.SIGHUP, previous)


def _run_remote(options: ServeOptions, data: Path, sock: socket.socket) -> None:
    from sync_server.client import SyncClient
    from sync_server.relay import RelayWorker, RemoteCache
    from sync_server.remote_proxy import RemoteState, build_remote_app

    assert options.upstream is not None
    assert options.upstream_token is not None
    cache = RemoteCache(data / "kits")
    cache.kits_dir.mkdir(parents=True, exist_ok=True)
    upstream = SyncClient(options.upstream, options.upstream_token)
    worker = RelayWorker(upstream, cache, options.bandwidth, options.contact_interval)
    state = RemoteState(upstream.server, options.upstream_token, cache)
    config = uvicorn.Config(build_remote_app(state), log_config=None, access_log=True)
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    worker.start()
    try:
        serve_until_stopped(
            server, sock, f"http://{host}:{port} (remote server of {upstream.server})"
        )
    finally:
        worker.stop()
        upstream.close()
        _say("stopped")
