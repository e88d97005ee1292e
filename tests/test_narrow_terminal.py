"""On a narrow terminal, a wrapped line keeps its indent: a continuation line starts under the
text it continues (after `error: `, or two columns in from a list item), never at column 0
where the terminal's or rich's own wrapping would put it. Pipes and files get whole lines."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

WIDTH = 40


def _run_in_terminal(argv: list[str], stream: str) -> tuple[int, list[str]]:
    """Run `argv` with `stream` ("stdout" or "stderr") on a pseudo-terminal of WIDTH columns."""
    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=follower if stream == "stdout" else subprocess.DEVNULL,
            stderr=follower if stream == "stderr" else subprocess.DEVNULL,
            env={**os.environ, "COLUMNS": str(WIDTH)},
            timeout=600,
        )
    finally:
        os.close(follower)
    chunks = []
    try:
        while chunk := os.read(leader, 65536):
            chunks.append(chunk)
    except OSError:  # EIO: the other side is closed and everything was read
        pass
    finally:
        os.close(leader)
    return done.returncode, b"".join(chunks).decode().replace("\r\n", "\n").splitlines()


def test_a_long_error_line_wraps_under_its_label(tmp_path: Path) -> None:
    missing = tmp_path / "engine-installer-media" / "engine-5.0.0.iso"
    argv = [sys.executable, "-m", "commands.engine_media", "md5", "check", str(missing)]
    status, lines = _run_in_terminal(argv, "stderr")
    assert status == 2
    assert lines[0].startswith("error:")
    assert lines[-1].startswith("hint:")
    assert len(lines) > 2
    label = "error: "
    for line in lines[1:]:
        if line.startswith("hint: "):
            label = "hint: "
            continue
        assert line.startswith(" " * len(label)), lines
        assert line.strip(), lines


def test_a_screen_list_item_wraps_inside_its_indent() -> None:
    from installer.frontends.interactive import _show

    console = Console(file=io.StringIO(), width=WIDTH)
    item = "  win10-custom: custom, PV drivers 4.5.0, needs a manual PV driver upgrade"
    _show(console, "Existing installation", f"Engine 4.5.0 is installed.\n{item}")
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    at = lines.index(item[: item.index("drivers") + len("drivers")])
    assert len(lines) > at + 1
    assert all(line.startswith("    ") for line in lines[at + 1 :]), lines


@pytest.mark.root
def test_the_installers_report_wraps_its_vm_notes_inside_their_indent(
    engine_disk: object, engine_medium: object, tmp_path: Path
) -> None:
    assert callable(engine_disk)
    assert callable(engine_medium)
    disk = engine_disk("4.5.0")
    answers = tmp_path / "upgrade.toml"
    answers.write_text(
        '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'
    )
    argv = [sys.executable, "-m", "commands.engine_install", "--media", str(engine_medium("5.0.0"))]
    status, lines = _run_in_terminal(
        [*argv, "--target", str(disk), "--answers", str(answers)], "stdout"
    )
    assert status == 0, lines
    notes = [i for i, line in enumerate(lines) if line.startswith("  ") and ":" in line]
    assert notes, lines
    wrapped = [i + 1 for i in notes if i + 1 < len(lines) and len(lines[i]) > WIDTH - 12]
    assert wrapped, lines  # at least one note was long enough to wrap
    for i in wrapped:
        assert lines[i].startswith("    "), lines
    assert all(len(line) <= WIDTH for line in lines if " " in line.strip()), lines
