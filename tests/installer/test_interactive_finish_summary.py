"""The interactive installer shows what it did once: on the finish screen, not again after
it. A real fresh install in a pty, the real engine on a blank image."""

from __future__ import annotations

import sys
from pathlib import Path

import pexpect
import pytest

pytestmark = [pytest.mark.root]

DOWN = "\x1b[B"
ENTER = "\r"


def test_the_finished_summary_is_shown_once(tmp_path: Path, iso: Path, blank: Path) -> None:
    transcript = tmp_path / "transcript.txt"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "commands.engine_install", "--media", str(iso), "--target", str(blank)],
        dimensions=(50, 140),
        encoding="utf-8",
        timeout=300,
        env={
            "TERM": "xterm",
            "LC_ALL": "C.UTF-8",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "PROMPT_TOOLKIT_NO_CPR": "1",
        },
    )
    with transcript.open("w", encoding="utf-8") as log:
        child.logfile_read = log
        for prompt in ("Install Engine", "Welcome to the Engine", "I do not accept", "Quit"):
            child.expect_exact(prompt)
            child.send(ENTER)
        child.expect_exact("Standalone (not registered)")
        child.send(DOWN + ENTER)
        child.expect_exact("Install now")
        child.send(ENTER)
        child.expect_exact("Do not reboot")
        child.send(DOWN + ENTER)
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0
    text = transcript.read_text()
    # The finish screen shows the report (drawn again as the pointer moves); nothing printed
    # after the screens are left repeats it.
    screens, after = text.rsplit("\x1b[0m\x1b[?25h", 1)  # where the screens are left
    assert "Engine 5.0.0 installed in slot A." in screens
    assert "Upgrade status: Blank" in screens
    assert "Engine 5.0.0 installed" not in after
    assert "Upgrade status" not in after
