"""A real `engine-sync serve` on 127.0.0.1 (port 0: the kernel picks a free one) per test,
started as its own process and stopped with SIGTERM; clients talk to it over HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from commands import engine_disk, engine_sync
from enginekit.process import spawn
from reference_builds.registered_disk import create_registered_disk
from sync_server.client import SyncClient


@dataclass(frozen=True)
class RunningServer:
    url: str
    data: Path
    log: Path
    admin_token: str

    def admin(self) -> SyncClient:
        return SyncClient(self.url, self.admin_token)

    def client(self, token: str) -> SyncClient:
        return SyncClient(self.url, token)


@contextmanager
def running_server(data: Path, log: Path, *extra: str) -> Iterator[RunningServer]:
    """`engine-sync serve --data DATA` with `extra` options on a free port of 127.0.0.1 until
    the block ends; stopped with SIGTERM and checked clean."""
    with log.open("wb") as log_file:
        proc = spawn(
            # --debug: the most the server ever logs (its access log included) goes to the
            # log file, so the token tests see all of it.
            [
                sys.executable,
                "-m",
                "commands.engine_sync",
                "serve",
                "--debug",
                "--data",
                data,
                "--listen",
                "127.0.0.1:0",
                *extra,
            ],
            stderr=log_file.fileno(),
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline().decode()
            assert first.startswith("listening on "), log.read_text()
            url = first.split()[2]
            token = (data / "admin-token").read_text().strip()
            yield RunningServer(url, data, log, token)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rest = proc.communicate(timeout=60)[0].decode()
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
    assert proc.returncode == 0, log.read_text()
    assert rest.strip().endswith("stopped")


@pytest.fixture
def sync_server(tmp_path: Path) -> Iterator[RunningServer]:
    with running_server(tmp_path / "sync-data", tmp_path / "server.log") as server:
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
