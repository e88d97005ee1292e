"""`engine-sync`'s console: names and errors from the server are printed on one line with
their control characters escaped, token names are checked by the server, every refusal has a
hint, and a --server that is not a URL is bad input (exit 2)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from commands import engine_sync
from sync_server.client import ApiRefused

from .conftest import RunningServer

ESCAPES = "\x1b]0;owned\x07\x1b[2J"

Cli = Callable[..., tuple[int, str, str]]


def test_a_computer_name_with_escapes_is_printed_escaped(
    sync_server: RunningServer, sync_cli: Cli
) -> None:
    status, out, _ = sync_cli("token", "create")  # no name: the computer reports its own
    assert status == 0
    with sync_server.client(out.strip()) as computer:
        computer.post("/api/v1/checkin", {"version": "4.5.0", "disk_id": f"pc{ESCAPES}"})
    status, out, _ = sync_cli("computers")
    assert status == 0
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "pc\\x1b]0;owned\\x07\\x1b[2J" in out


@pytest.mark.parametrize("name", ["", "   ", f"pc{ESCAPES}", "x" * 201])
def test_a_token_name_that_is_not_printable_text_is_refused(
    sync_server: RunningServer, sync_cli: Cli, name: str
) -> None:
    with sync_server.admin() as admin, pytest.raises(ApiRefused) as refused:
        admin.post("/api/v1/tokens", {"name": name})
    assert refused.value.status == 422
    assert any(d.startswith("body.name:") for d in refused.value.details)
    status, out, err = sync_cli("token", "create", "--name", name)
    assert status == 2
    assert out == ""
    assert "\x1b" not in err
    with sync_server.admin() as admin:
        assert [t["name"] for t in admin.get("/api/v1/tokens") if t["role"] == "computer"] == []


@pytest.mark.parametrize(
    ("args", "listing"),
    [
        (("task", "cancel", "999"), "engine-sync tasks"),
        (("token", "revoke", "999"), "engine-sync token create --json"),
    ],
)
def test_a_refusal_names_the_command_that_lists_what_exists(
    sync_cli: Cli, args: tuple[str, ...], listing: str
) -> None:
    status, _, err = sync_cli(*args)
    lines = err.splitlines()
    assert status == 2
    assert lines[0].startswith("error: server refused (404)")
    assert lines[-1].startswith("hint: ")
    assert listing in lines[-1]


def test_a_refusal_without_a_server_hint_still_has_one(
    sync_server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["kits", "--server", f"{sync_server.url}/sub", "--token", sync_server.admin_token]
    assert engine_sync.main(argv) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "error: server refused (404): Not Found"
    assert lines[-1].startswith("hint: ")
    assert "root URL" in lines[-1]


@pytest.mark.parametrize("server", ["notaurl", "ftp://h:1", "http://", "127.0.0.1:8470"])
def test_a_server_that_is_not_a_url_is_bad_input(
    server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert engine_sync.main(["kits", "--server", server, "--token", "t"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"error: --server {server}: not an http:// or https:// URL")
    assert lines[1] == "hint: give --server http://HOST:PORT (the address engine-sync serve prints)"
