"""`engine-disk create --synchronizer URL --token T`: both options or neither, and only with
--engine; refused with one error line before any file is made."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands import engine_disk


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--engine", "4.5.0", "--synchronizer", "http://s"], "--synchronizer and --token go"),
        (["--engine", "4.5.0", "--token", "t"], "--synchronizer and --token go together"),
        (["--synchronizer", "http://s", "--token", "t"], "it needs --engine VERSION"),
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
