"""The Synchronizer token never leaks: not in logs (even with --debug), not on stdout or
stderr, not in reports, plans or recorded answers, not in error messages about itself."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from commands.engine_install import plan_text
from enginekit.process import run
from installer import answers
from installer.answers import AnswerFileError, parse_answers
from installer.frontends.api import Installer, load_medium, load_target
from installer.frontends.unattended import drive

TOKEN = "CANARY-t0ken-5f3a9c"


def engine_install(*args: object) -> tuple[int, str]:
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)], check=False, timeout=300
    )
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


def answer_file(tmp_path: Path, token: str = TOKEN) -> Path:
    path = tmp_path / "answers.toml"
    path.write_text(
        '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[registration]\n'
        f'mode = "synchronizer"\nserver = "sync.example.com"\ntoken = "{token}"\n'
    )
    return path


def test_dry_run_with_debug_never_shows_the_token(tmp_path: Path, iso: Path, blank: Path) -> None:
    recorded = tmp_path / "recorded.toml"
    status, output = engine_install(
        "--media",
        iso,
        "--target",
        blank,
        "--answers",
        answer_file(tmp_path),
        "--dry-run",
        "--debug",
        "--record-answers",
        recorded,
    )
    assert status == 0, output
    assert "DEBUG" in output  # the debug log really was on
    assert "token ***" in output
    assert TOKEN not in output
    text = recorded.read_text()
    assert TOKEN not in text
    assert "never recorded" in text


@pytest.mark.parametrize("bad_token", [TOKEN + " with space", TOKEN * 500, TOKEN + "\\u0007"])
def test_errors_about_the_token_do_not_echo_it(tmp_path: Path, bad_token: str) -> None:
    path = answer_file(tmp_path, bad_token)
    with pytest.raises(AnswerFileError) as caught:
        answers.load_answers(path)
    assert "registration.token" in caught.value.message
    assert TOKEN not in caught.value.message
    assert TOKEN not in (caught.value.hint or "")
    status, output = engine_install("--validate", path)
    assert status == 2
    assert TOKEN not in output
    # With --debug the error comes with its traceback: still no token in it.
    status, output = engine_install("--validate", path, "--debug")
    assert status != 0
    assert "Traceback" in output
    assert TOKEN not in output


def test_model_plan_and_report_hide_the_token(tmp_path: Path, iso: Path, blank: Path) -> None:
    parsed = parse_answers(answer_file(tmp_path).read_bytes(), "a.toml")
    assert TOKEN not in repr(parsed)
    assert TOKEN not in str(parsed)
    installer = Installer(load_medium(iso), load_target(blank), dry_run=True)
    report = drive(installer, parsed)
    assert report is not None
    plan = report.plan
    assert plan.registration is not None
    assert plan.registration.token is not None
    assert plan.registration.token.reveal() == TOKEN  # it is there for the engine...
    for text in (
        repr(plan),
        str(plan),
        repr(report),
        plan_text(plan),
        repr(installer.model),
        answers.record(installer.model),
        installer.view.text,
    ):
        assert TOKEN not in text  # ...and nowhere else


@pytest.mark.root
@pytest.mark.slow
def test_real_install_logs_and_report_hide_the_token(
    tmp_path: Path, iso: Path, blank: Path
) -> None:
    from disk_images.probe import Installation, probe

    recorded = tmp_path / "recorded.toml"
    status, output = engine_install(
        "--media",
        iso,
        "--target",
        blank,
        "--answers",
        answer_file(tmp_path),
        "--debug",
        "--record-answers",
        recorded,
    )
    assert status == 0, output[-3000:]
    assert "DEBUG" in output
    assert "Engine 5.0.0 installed" in output
    assert TOKEN not in output
    assert TOKEN not in recorded.read_text()
    installed = probe(blank)  # the token did reach the disk: this is not a vacuous pass
    assert isinstance(installed, Installation)
    assert installed.registered
