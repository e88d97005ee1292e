"""A Ctrl-C during a fresh install, before the engine wrote anything, says the disk is
untouched (still blank), not that it must be erased. The Ctrl-C arrives through the engine's
ENGINEKIT_INTERRUPT_AT seam at a real checkpoint of a real run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from enginekit.process import run
from reference_builds.pytest_plugin import sparse_digest

pytestmark = [pytest.mark.root]

FRESH = """\
[eula]
accept = true
[keyboard]
layout = "us"
[registration]
mode = "standalone"
"""


@pytest.mark.parametrize("checkpoint", ["verify-medium", "probe"])
def test_ctrl_c_before_the_first_write_of_a_fresh_install_says_the_disk_is_untouched(
    tmp_path: Path, iso: Path, blank: Path, checkpoint: str
) -> None:
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH)
    before = sparse_digest(blank)
    proc = run(
        [
            sys.executable,
            "-m",
            "commands.engine_install",
            "--media",
            str(iso),
            "--target",
            str(blank),
            "--answers",
            str(answers),
        ],
        check=False,
        timeout=300,
        env={**os.environ, "ENGINEKIT_INTERRUPT_AT": checkpoint},
    )
    err = proc.stderr.decode()
    assert proc.returncode == 130, err
    assert sparse_digest(blank) == before
    lines = err.splitlines()
    assert lines[0] == (
        "error: interrupted during the install, before anything was written: "
        "the disk is still blank"
    )
    assert "erase" not in err
