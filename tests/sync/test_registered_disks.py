"""`engine-disk create --synchronizer URL --token T`: both options or neither, only with
--engine, and a server address by the installer's rule; refused with one error line before
any file is made. A computer registered with `host:port` checks in."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands import engine_disk

from .conftest import ON_BOTH_DATABASES, RunningServer, agent, registered_disk


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--engine", "4.5.0", "--synchronizer", "http://s"], "--synchronizer and --token go"),
        (["--engine", "4.5.0", "--token", "t"], "--synchronizer and --token go together"),
        (["--synchronizer", "http://s", "--token", "t"], "it needs --engine VERSION"),
        (
            ["--engine", "4.5.0", "--synchronizer", "http://x:99999", "--token", "t"],
            "a port is a number 1-65535",
        ),
    ],
)
def test_registration_options_are_checked_first(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = tmp_path / "pc.img"
    assert engine_disk.main(["create", str(disk), "--size", "2G", *options]) == 2
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1
    assert message in errors[0]
    assert not disk.exists()


@ON_BOTH_DATABASES
@pytest.mark.root
def test_a_computer_registered_with_host_and_port_checks_in(
    sync_server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sync_server.admin() as admin:
        token = str(admin.post("/api/v1/tokens", {"name": "pc"})["token"])
    host_port = sync_server.url.removeprefix("http://").rstrip("/")
    disk = registered_disk(tmp_path / "pc.img", host_port, token)
    assert agent("--once", "--cache", str(tmp_path / "cache"), str(disk)) == 0, capsys.readouterr()
    with sync_server.admin() as admin:
        (computer,) = admin.get("/api/v1/computers")
    assert computer["name"] == "pc"
