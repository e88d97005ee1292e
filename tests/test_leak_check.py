"""The suite's own leak checks catch what they promise to catch (run in a child pytest)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# The leaked device is held until the child process exits and is attached with autoclear,
# so the kernel detaches it when the child's descriptor closes: nobody has to detach it by
# a number read from a listing (which another test may own by then).
LEAKY_TEST = """
import pytest

from disk_images.loop import LoopDevice

HELD = []


@pytest.fixture(scope="session")
def backing(tmp_path_factory):
    path = tmp_path_factory.mktemp("outside-any-test") / "disk.img"
    path.write_bytes(bytes(1 << 20))
    return path


def test_leaks_a_loop_device_outside_its_tmp_path(backing):
    loop = LoopDevice(backing)
    loop.attach()
    HELD.append(loop)
"""


@pytest.mark.root
def test_session_check_fails_a_run_that_leaks_a_loop_device(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "conftest.py")
    (project / "test_leaky.py").write_text(LEAKY_TEST)
    basetemp = tmp_path / "basetemp"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0",
         f"--basetemp={basetemp}", "--rootdir", project, project],
        capture_output=True, text=True, cwd=project, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert "1 passed" in proc.stdout  # the test itself passed ...
    assert "session-wide leak check" in proc.stdout  # ... the session check did not
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
