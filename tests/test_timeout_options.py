"""Every `--timeout` of every command takes a number of seconds above 0 and nothing else: a
zero, negative, infinite or not-a-number timeout is a usage error (exit 2), not a run that
fails every boot at once and blames the medium."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from commands import engine_disk, engine_media

BAD_TIMEOUTS = ("0", "-5", "inf", "nan")
Main = Callable[[Sequence[str] | None], int]


def _command_lines(tmp: Path) -> dict[str, tuple[Main, list[str]]]:
    iso, disk = tmp / "x.iso", tmp / "x.img"
    return {
        "engine-media verify --boot": (engine_media.main, ["verify", str(iso), "--boot"]),
        "engine-disk boot": (engine_disk.main, ["boot", str(disk)]),
        "engine-disk agent": (engine_disk.main, ["agent", str(disk)]),
    }


@pytest.mark.parametrize("value", BAD_TIMEOUTS)
@pytest.mark.parametrize(
    "command", ["engine-media verify --boot", "engine-disk boot", "engine-disk agent"]
)
def test_a_timeout_not_above_zero_is_a_usage_error(
    command: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main, argv = _command_lines(tmp_path)[command]
    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--timeout", value])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--timeout" in err
    assert "damaged" not in err
