"""Tokens: a wrong or revoked one is refused (401), one computer's token cannot read or change
another computer, and no token is ever in clear in the server's log or database."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from reference_builds.pytest_plugin import sparse_digest
from sync_server.client import ApiRefused
from sync_server.tokens import new_token

from .conftest import ON_BOTH_DATABASES, RunningServer, agent, import_kit, registered_disk


def _token(sync_server: RunningServer, name: str) -> str:
    with sync_server.admin() as admin:
        return str(admin.post("/api/v1/tokens", {"name": name})["token"])


def test_wrong_token_is_refused(sync_server: RunningServer) -> None:
    with sync_server.client("not-a-token") as client, pytest.raises(ApiRefused) as refused:
        client.post("/api/v1/checkin", {"version": "4.5.0"})
    assert refused.value.status == 401


@ON_BOTH_DATABASES
def test_revoked_token_is_refused(sync_server: RunningServer) -> None:
    token = _token(sync_server, "pc")
    with sync_server.client(token) as client:
        client.post("/api/v1/checkin", {"version": "4.5.0"})
    with sync_server.admin() as admin:
        (row,) = [t for t in admin.get("/api/v1/tokens") if t["name"] == "pc"]
        admin.post(f"/api/v1/tokens/{row['id']}/revoke")
    with sync_server.client(token) as client, pytest.raises(ApiRefused) as refused:
        client.post("/api/v1/checkin", {"version": "4.5.0"})
    assert refused.value.status == 401


@ON_BOTH_DATABASES
def test_a_computer_token_cannot_read_or_change_another_computer(
    sync_server: RunningServer,
    sync_cli: Callable[..., tuple[int, str, str]],
    engine_medium: Callable[[str], Path],
) -> None:
    assert import_kit(sync_cli, engine_medium("5.0.0"))[0] == 0
    token_a, token_b = _token(sync_server, "a"), _token(sync_server, "b")
    with sync_server.client(token_a) as a, sync_server.client(token_b) as b:
        id_a = a.post("/api/v1/checkin", {"version": "4.5.0"})["computer_id"]
        id_b = b.post("/api/v1/checkin", {"version": "4.5.0"})["computer_id"]
        assert sync_cli("assign", "5.0.0", "--computer", str(id_b))[0] == 0
        offer = b.post("/api/v1/checkin", {"version": "4.5.0"})["update"]
        assert a.get(f"/api/v1/computers/{id_a}")["id"] == id_a
        calls: tuple[Callable[[], object], ...] = (
            lambda: a.get(f"/api/v1/computers/{id_b}"),
            lambda: a.get("/api/v1/computers"),
            lambda: a.post(
                f"/api/v1/assignments/{offer['assignment_id']}/status", {"status": "Failed"}
            ),
            lambda: a.request("GET", offer["download"]),
        )
        for call in calls:
            with pytest.raises(ApiRefused) as refused:
                call()
            assert refused.value.status == 403
        assert b.get(f"/api/v1/computers/{id_b}")["assignments"][0]["status"] == "Signalled"


def test_tokens_never_appear_in_clear_in_the_log_or_database(sync_server: RunningServer) -> None:
    token = _token(sync_server, "pc")
    with sync_server.client(token) as client:
        client.post("/api/v1/checkin", {"version": "4.5.0"})
    with sync_server.client("wrong-" + token) as client, pytest.raises(ApiRefused):
        client.post("/api/v1/checkin", {"version": "4.5.0"})
    stored = b"".join(p.read_bytes() for p in sync_server.data.glob("sync.db*"))
    log = sync_server.log.read_bytes()
    assert b'"POST /api/v1/checkin HTTP/1.1" 401' in log  # the access log is there
    stored += log
    for secret in (token, sync_server.admin_token):
        assert secret.encode() not in stored
    assert oct((sync_server.data / "admin-token").stat().st_mode & 0o777) == "0o600"


@pytest.mark.root
def test_agent_with_a_wrong_token_changes_nothing_on_the_disk(
    sync_server: RunningServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "a-token-the-server-never-made"
    disk = registered_disk(tmp_path / "pc.img", sync_server.url, token)
    before = sparse_digest(disk)
    assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 2
    captured = capsys.readouterr()
    assert "server refused (401)" in captured.out
    assert token not in captured.out + captured.err + caplog.text
    assert "POST" in caplog.text  # the client's requests were logged, without the token
    assert sparse_digest(disk) == before


def test_tokens_work_as_option_values() -> None:
    # A token is passed as `--token T`; one starting with "-" would read as an option.
    tokens = [new_token() for _ in range(200)]
    assert all(len(t) == 64 and t[0] != "-" for t in tokens)
    assert len(set(tokens)) == 200
