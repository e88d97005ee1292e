"""A Ctrl-C while a program is still starting (importing its modules, parsing its arguments)
ends it without a traceback: one `error:` line and status 130.

The moments are found, not timed: with PYTHONPROFILEIMPORTTIME Python reports each import as
it completes, and the Ctrl-C is sent when the chosen module has been imported. (Before the
`commands` package is imported, CPython's own start-up has no handler of ours; with the
plain-path editable install that window is a few tens of milliseconds.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from commands import PROGRAMS

REPO = Path(__file__).resolve().parent.parent

# Modules whose import completes during the start of `engine-disk inspect`, in that order;
# more imports follow each, so the Ctrl-C lands while the program is still starting.
MOMENTS = ["commands", "disk_images.state", "disk_images.probe"]
STARTING = ["error: interrupted while starting; nothing was done"]
# Should the program have reached its command by the time the signal lands.
RUNNING = [
    "error: interrupted; everything this command had set up was released",
    "hint: run the command again when you are ready",
]


def _interrupt_after_import(argv: list[str], module: str) -> tuple[int, list[str]]:
    program = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
        text=True,
    )
    assert program.stderr is not None
    lines: list[str] = []
    for line in program.stderr:
        if not line.startswith("import time:"):
            lines.append(line.rstrip("\n"))
        elif line.rsplit("|", 1)[-1].strip() == module:
            program.send_signal(signal.SIGINT)
            break
    else:
        pytest.fail(f"{module} was never imported: {lines}")
    lines += [ln.rstrip("\n") for ln in program.stderr if not ln.startswith("import time:")]
    return program.wait(timeout=60), lines


@pytest.mark.parametrize("module", MOMENTS)
@pytest.mark.parametrize(
    "launcher",
    [
        [str(Path(sys.executable).parent / "engine-disk")],
        [sys.executable, "-m", "commands.engine_disk"],
    ],
    ids=["console-script", "python-m"],
)
def test_ctrl_c_while_starting_is_one_line(
    launcher: list[str], module: str, tmp_path: Path
) -> None:
    status, lines = _interrupt_after_import([*launcher, "inspect", str(tmp_path / "x.img")], module)
    assert status == 130, lines
    assert lines in (STARTING, RUNNING)


def test_every_console_script_is_named_for_the_quiet_start() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert frozenset(scripts) == PROGRAMS
