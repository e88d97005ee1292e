"""The suite's own leak checks catch what they promise to catch (run in a child pytest)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LEAKY_TEST = """
import subprocess

import pytest


@pytest.fixture(scope="session")
def backing(tmp_path_factory):
    path = tmp_path_factory.mktemp("outside-any-test") / "disk.img"
    path.write_bytes(bytes(1 << 20))
    return path


def test_leaks_a_loop_device_outside_its_tmp_path(backing):
    subprocess.run(["losetup", "--find", "--show", str(backing)], check=True)
"""


@pytest.mark.root
def test_session_check_fails_a_run_that_leaks_a_loop_device(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "conftest.py")
    (project / "test_leaky.py").write_text(LEAKY_TEST)
    basetemp = tmp_path / "basetemp"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0",
             f"--basetemp={basetemp}", "--rootdir", project, project],
            capture_output=True, text=True, cwd=project, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert "1 passed" in proc.stdout  # the test itself passed ...
        assert "session-wide leak check" in proc.stdout  # ... the session check did not
        assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    finally:
        listing = subprocess.run(
            ["losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        for line in listing.stdout.splitlines():
            if str(basetemp) in line:
                subprocess.run(["losetup", "-d", line.split()[0]], check=False)
