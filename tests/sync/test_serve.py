"""`engine-sync serve`: a port in use, a data directory it may not write or one another server
uses is one error line (exit 2), and a port in use leaves no data directory; the API is
documented at /openapi.json."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from commands import engine_sync
from enginekit.process import run, spawn

from .conftest import ON_BOTH_DATABASES, RunningServer, start_server, stop_server


def test_port_in_use_is_one_error_line(
    sync_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listen = sync_server.url.removeprefix("http://")
    data = tmp_path / "second"
    status = engine_sync.main(["serve", "--data", str(data), "--listen", listen])
    err = capsys.readouterr().err
    assert status == 2
    assert err.splitlines()[0] == f"error: --listen {listen}: the port is already in use"
    assert err.splitlines()[1].startswith("hint: ")
    assert not data.exists()


@ON_BOTH_DATABASES
def test_openapi_document_lists_the_api(sync_server: RunningServer) -> None:
    doc = httpx.get(f"{sync_server.url}/openapi.json").json()
    for path in ("/api/v1/checkin", "/api/v1/kits/{kit_id}/assignments", "/api/v1/tasks"):
        assert path in doc["paths"]


def test_database_that_cannot_be_used_names_it_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql+psycopg://sync:s3cret-pw@127.0.0.1:1/sync"
    argv = ["serve", "--data", str(tmp_path / "d"), "--listen", "127.0.0.1:0", "--database", url]
    assert engine_sync.main(argv) == 3
    err = capsys.readouterr().err
    first, hint = err.splitlines()[:2]
    assert first.startswith("error: ")
    assert "postgresql+psycopg://sync:***@127.0.0.1:1/sync" in first
    assert "Connection refused" in first  # psycopg is installed: the server was tried
    assert hint.startswith("hint: ")
    assert "s3cret-pw" not in err


@pytest.mark.root
def test_a_data_directory_that_cannot_be_written_is_one_error_line(tmp_path: Path) -> None:
    parent = tmp_path / "read-only"
    parent.mkdir()
    parent.chmod(0o555)
    data = parent / "data"
    # Root writes through mode bits; without CAP_DAC_OVERRIDE it meets them as any user does.
    done = run(
        [
            "setpriv",
            "--bounding-set=-dac_override,-dac_read_search",
            "--",
            sys.executable,
            "-m",
            "commands.engine_sync",
            "serve",
            "--data",
            str(data),
            "--listen",
            "127.0.0.1:0",
        ],
        check=False,
        timeout=60,
    )
    err = done.stderr.decode()
    lines = err.splitlines()
    assert done.returncode == 2, err
    assert lines[0].startswith(f"error: --data {data}: cannot write"), err
    assert lines[1].startswith("hint: ")
    assert "Traceback" not in err


def test_a_second_server_on_the_same_data_directory_is_refused(
    sync_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    files_before = sorted(p.name for p in sync_server.data.iterdir())
    argv = ["serve", "--data", str(sync_server.data), "--listen", "127.0.0.1:0"]
    assert engine_sync.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"error: --data {sync_server.data}: another engine-sync serve uses this directory (pid "
    )
    assert err[1] == ("hint: stop that server first, or give this one its own --data directory")
    assert sorted(p.name for p in sync_server.data.iterdir()) == files_before
    # The first server is unharmed.
    assert httpx.get(f"{sync_server.url}/openapi.json").status_code == 200


def test_a_lock_left_by_a_killed_server_blocks_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "commands.engine_sync", "serve", "--data", str(data),
            "--listen", "127.0.0.1:0"]  # fmt: skip
    for _ in range(2):  # the second start finds the first one's lock file, not its lock
        with spawn(argv, stderr=subprocess.DEVNULL) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(b"listening on ")
            proc.kill()
        assert proc.wait() == -9
    assert (data / "serve.lock").exists()


class _SignalledStdout:
    """stdout that gets SIGTERM the moment the listening line is written: the moment a
    script that read that line may stop the server, before uvicorn handles signals itself."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        if text.startswith("listening on "):
            os.kill(os.getpid(), signal.SIGTERM)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_sigterm_right_after_the_listening_line_is_a_clean_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race one count run met: `engine-sync serve` read, then stopped at once."""
    import socket

    import uvicorn
    from fastapi import FastAPI

    from enginekit.cli import sigterm_as_interrupt
    from sync_server.server import bind, serve_until_stopped

    out = _SignalledStdout()
    monkeypatch.setattr("sys.stdout", out)
    previous = signal.signal(signal.SIGTERM, sigterm_as_interrupt)
    sock: socket.socket = bind("127.0.0.1", 0)
    try:
        server = uvicorn.Server(uvicorn.Config(FastAPI(), log_config=None))
        try:
            serve_until_stopped(server, sock, "http://127.0.0.1:0")
        except KeyboardInterrupt:
            pytest.fail("the SIGTERM escaped: a traceback (--debug) or exit 130, not a stop")
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    assert out.lines == ["listening on http://127.0.0.1:0\n"]
    assert not server.started  # stopped before it served


def test_a_server_started_under_nohup_keeps_serving_after_a_hangup(tmp_path: Path) -> None:
    """A closed terminal stops a command as Ctrl-C does, but `nohup engine-sync serve &`
    asked for the opposite: the SIGHUP it ignores stays ignored."""
    data, log = tmp_path / "data", tmp_path / "serve.log"
    proc, url = start_server(data, log, launcher=("nohup",))
    try:
        proc.send_signal(signal.SIGHUP)
        # The signal is handled in the main thread before the loop serves another request.
        assert httpx.get(f"{url}/openapi.json", timeout=30).status_code == 200
        assert proc.poll() is None
    finally:
        stop_server(proc, log)
