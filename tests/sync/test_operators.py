"""Named console operators over the JSON API with `engine-sync operator add/list/remove`
(admin token only): the password is read from stdin (or typed without echo), stored only as
its Argon2id hash and never in clear in the server's database or log."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pexpect
import pytest

from .conftest import RunningServer, running_server

Cli = Callable[..., tuple[int, str, str]]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One server for the module (each test uses its own operator names)."""
    root = tmp_path_factory.mktemp("operators")
    with running_server(root / "sync-data", root / "server.log") as server:
        yield server


def _names(cli: Cli) -> set[str]:
    return {d["name"] for d in json.loads(cli("operator", "list", "--json")[1])}


def _add(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, name: str, password: str
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return cli("operator", "add", name, "--password-stdin", "--json")


def test_operators_are_added_listed_and_removed(
    sync_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, err = _add(sync_cli, monkeypatch, "olga", PASSWORD)
    assert status == 0, err
    added = json.loads(out)
    assert added["name"] == "olga"
    assert "password" not in out
    assert "olga" in _names(sync_cli)
    assert "\nolga (added " in "\n" + sync_cli("operator", "list")[1]
    status, out, _ = sync_cli("operator", "remove", "olga", "--json")
    assert status == 0
    assert json.loads(out)["id"] == added["id"]
    assert "olga" not in _names(sync_cli)


def test_refused_operator_requests_say_why_and_change_nothing(
    sync_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _add(sync_cli, monkeypatch, "oskar", PASSWORD)[0] == 0
    status, _, err = _add(sync_cli, monkeypatch, "oskar", "another password")
    assert status == 2
    assert "error: server refused (409): operator 'oskar' already exists" in err
    status, _, err = _add(sync_cli, monkeypatch, "short", "1234567")
    assert status == 2
    assert "shorter than 8 characters" in err
    assert "hint: " in err
    status, _, err = sync_cli("operator", "remove", "nobody")
    assert status == 2
    assert "no operator 'nobody'" in err
    computer = sync_cli("token", "create", "--name", "pc")[1].strip()
    status, _, err = sync_cli("operator", "list", token=computer)
    assert status == 2
    assert "admin token" in err
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    status, _, err = sync_cli("operator", "add", "typed")
    assert status == 2
    assert "--password-stdin" in err
    names = _names(sync_cli)
    assert "oskar" in names
    assert not names & {"short", "typed"}


def test_passwords_never_appear_in_clear_in_the_log_or_database(
    sync_server: RunningServer, sync_cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _add(sync_cli, monkeypatch, "pavel", PASSWORD)[0] == 0
    stored = b"".join(p.read_bytes() for p in sync_server.data.glob("sync.db*"))
    assert b"$argon2id$" in stored  # the hash is there
    log = sync_server.log.read_bytes()
    assert b'"POST /api/v1/operators HTTP/1.1" 201' in log  # the access log is there
    assert PASSWORD.encode() not in stored + log


def test_a_typed_password_is_not_echoed_and_must_be_typed_twice(
    sync_server: RunningServer, sync_cli: Cli, tmp_path: Path
) -> None:
    def add(name: str, first: str, second: str) -> tuple[int, str]:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "commands.engine_sync", "operator", "add", name],
            encoding="utf-8",
            timeout=60,
            cwd=str(Path(__file__).parents[2]),
            env={
                "PATH": "/usr/bin:/bin",
                "TMPDIR": str(tmp_path),
                "ENGINE_SYNC_SERVER": sync_server.url,
                "ENGINE_SYNC_TOKEN": sync_server.admin_token,
            },
        )
        transcript = io.StringIO()
        child.logfile_read = transcript  # everything the terminal showed
        child.expect_exact(f"password for {name}: ")
        child.sendline(first)
        child.expect_exact("again: ")
        child.sendline(second)
        child.expect(pexpect.EOF)
        child.close()
        return int(child.exitstatus or 0), transcript.getvalue()

    status, transcript = add("typist", PASSWORD, PASSWORD)
    assert status == 0, transcript
    assert "operator typist added" in transcript
    assert PASSWORD not in transcript  # not echoed
    status, transcript = add("sloppy", PASSWORD, PASSWORD + "!")
    assert status == 2
    assert "the two passwords differ" in transcript
    names = _names(sync_cli)
    assert "typist" in names
    assert "sloppy" not in names
