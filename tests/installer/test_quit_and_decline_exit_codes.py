"""Quitting the interactive installer and declining the licence in an answer file both exit 2
(the README keeps 1 for a failed check) and say nothing was written.
The real CLI in a pty (pexpect), the real medium, a blank disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

from enginekit.process import run
from reference_builds.pytest_plugin import EngineDiskFactory, sparse_digest

DOWN = "\x1b[B"
ENTER = "\r"


def test_quit_on_screen_exits_2_and_writes_nothing(tmp_path: Path, iso: Path, blank: Path) -> None:
    with (tmp_path / "transcript.txt").open("w", encoding="utf-8") as log:
        child = pexpect.spawn(
            sys.executable,
            ["-m", "commands.engine_install", "--media", str(iso), "--target", str(blank)],
            dimensions=(50, 140),
            encoding="utf-8",
            timeout=30,
            env={
                "TERM": "xterm",
                "LC_ALL": "C.UTF-8",
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "PROMPT_TOOLKIT_NO_CPR": "1",
            },
        )
        child.logfile_read = log
        child.expect_exact("Install Engine")
        child.send(ENTER)
        child.expect_exact("Welcome to the Engine")
        child.send(ENTER)
        child.expect_exact("I do not accept")
        child.expect_exact("Quit (nothing is written)")
        child.send(DOWN * 3 + ENTER)  # accept, decline, < Back, Quit
        child.expect_exact("nothing was written")
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 2, (tmp_path / "transcript.txt").read_text()
    assert blank.stat().st_blocks == 0


def test_declining_in_an_answer_file_exits_2(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "declined.toml"
    answers.write_text(
        '[eula]\naccept = false\n[keyboard]\nlayout = "us"\n[registration]\nmode = "standalone"\n'
    )
    proc = run(
        [sys.executable, "-m", "commands.engine_install",
             "--media", str(iso), "--target", str(blank),
         "--answers", str(answers)],
        check=False,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "nothing was written" in proc.stderr.decode()
    assert blank.stat().st_blocks == 0


@pytest.mark.root
def test_declining_on_an_engine_disk_says_declined_not_missing_answers(
    tmp_path: Path, iso: Path, engine_disk: EngineDiskFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    before = sparse_digest(disk)
    answers = tmp_path / "declined.toml"
    answers.write_text("[eula]\naccept = false\n")
    proc = run(
        [sys.executable, "-m", "commands.engine_install",
         "--media", str(iso), "--target", str(disk), "--answers", str(answers)],
        check=False,
        timeout=300,
    )  # fmt: skip
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: {answers}: eula.accept is false: the licence was declined; nothing was written"
    ]
    assert sparse_digest(disk) == before
