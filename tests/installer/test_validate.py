"""`engine-install --validate FILE --media ISO --target DISK` refuses what the real run refuses
(`[eula] accept = false`, `mode = "synchronizer"` with `server = ""`): it applies the run's
checks and names the key path; a screen that
still refuses an unattended answer names the key and hints at --validate. The real CLI, the
real medium, a blank disk.
"""

from __future__ import annotations

import sys
from pathlib import Path

from enginekit.process import run
from installer.answers import parse_answers
from installer.frontends.unattended import _key_path
from installer.model import Screen

DECLINED = """\
[eula]
accept = false
[keyboard]
layout = "us"
[registration]
mode = "standalone"
"""

EMPTY_SERVER = """\
[eula]
accept = true
[keyboard]
layout = "us"
[registration]
mode = "synchronizer"
server = ""
token = "abc"
"""


def engine_install(*args: object) -> tuple[int, str, str]:
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)], check=False, timeout=300
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def test_validate_reports_a_declined_licence(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "declined.toml"
    answers.write_text(DECLINED)
    status, out, err = engine_install("--validate", answers, "--media", iso, "--target", blank)
    assert status == 2, (out, err)
    assert "valid for" not in out
    first = err.splitlines()[0]
    assert first.startswith(f"error: {answers}: eula.accept: is false"), err
    assert "hint: " in err


def test_validate_and_run_report_an_empty_server(tmp_path: Path, iso: Path, blank: Path) -> None:
    answers = tmp_path / "sync.toml"
    answers.write_text(EMPTY_SERVER)
    for args in (
        ("--validate", answers, "--media", iso, "--target", blank),
        ("--validate", answers),
        ("--answers", answers, "--media", iso, "--target", blank, "--dry-run"),
    ):
        status, out, err = engine_install(*args)
        assert status == 2, (args, out, err)
        assert "valid" not in out
        assert f"error: {answers}: registration.server: is empty" in err, err
        assert "hint: " in err
    assert blank.stat().st_blocks == 0


def test_a_refused_screen_answer_names_its_key() -> None:
    answers = parse_answers(b'[eula]\naccept = true\n[keyboard]\nlayout = "us"\n', "a.toml")
    assert _key_path(Screen.KEYBOARD, answers) == "keyboard.layout"
    assert _key_path(Screen.EULA, answers) == "eula.accept"
