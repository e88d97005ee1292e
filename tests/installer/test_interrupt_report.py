"""A Ctrl-C during or after an install says what the disk was left with: the CLI probes the
target (read-only) and says it, not only that what the command had set up was released. The
Ctrl-C arrives through the test seam ENGINEKIT_INTERRUPT_AT, which raises KeyboardInterrupt at
a checkpoint of the real engine on a real 4.5.0 disk.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from enginekit.process import run
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root]

UPGRADE = """\
[eula]
accept = true
[existing]
action = "upgrade"
"""


def engine_install(env: dict[str, str], *args: object) -> tuple[int, str, str]:
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)],
        check=False,
        timeout=600,
        env={**os.environ, **env},
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.mark.parametrize(
    ("checkpoint", "expected", "hint"),
    [
        (
            "write-slot",
            # A Ctrl-C is not a failed upgrade: the status is back to what it was.
            "error: interrupted during the upgrade: the disk still boots Engine 4.5.0 (slot A), "
            "status Blank",
            "hint: run the same upgrade again to complete it",
        ),
        (
            "done",
            "error: interrupted after the upgrade finished: Engine 5.0.0 is installed "
            "(Installed (Reboot Required))",
            "hint: engine-disk boot ",
        ),
        ("verify-medium", "error: interrupted during the upgrade: the disk still boots", ""),
    ],
)
def test_ctrl_c_says_what_the_disk_was_left_with(
    tmp_path: Path,
    engine_disk: EngineDiskFactory,
    iso: Path,
    checkpoint: str,
    expected: str,
    hint: str,
) -> None:
    disk = engine_disk("4.5.0", size="2G", with_vms=False)
    answers = tmp_path / "upgrade.toml"
    answers.write_text(UPGRADE)
    status, _, err = engine_install(
        {"ENGINEKIT_INTERRUPT_AT": checkpoint},
        "--media", iso, "--target", disk, "--answers", answers,
    )  # fmt: skip
    assert status == 130, err
    assert "everything this command had set up was released" not in err
    lines = err.splitlines()
    assert lines[-2].startswith(expected), err
    assert lines[-1].startswith(hint), err


def test_ctrl_c_in_a_dry_run_says_nothing_was_written(
    tmp_path: Path, blank: Path, iso: Path
) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(
        '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'
    )
    status, _, err = engine_install(
        {"ENGINEKIT_INTERRUPT_AT": "verify-medium"},
        "--media", iso, "--target", blank, "--answers", answers, "--dry-run",
    )  # fmt: skip
    assert status == 130, err
    assert "a dry run writes nothing" in err
    assert blank.stat().st_blocks == 0
