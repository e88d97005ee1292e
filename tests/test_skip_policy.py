"""When the suite skips a test and when it must fail it instead (each case run in a child pytest).

A skip says "this machine lacks a capability". With `ENGINEKIT_REQUIRE_ALL=1` (CI) there is no
such excuse, so every skip, however it came about, fails the run and names the reason. And a
tool that is installed but fails is never a missing capability: it fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _pytest(
    args: list[str], *, cwd: Path, basetemp: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "0", "-rfEs",
         f"--basetemp={basetemp}", *args],
        capture_output=True, text=True, cwd=cwd, env=env, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def _path_without(tool: str, bin_dir: Path) -> str:
    """A PATH of one directory holding a symlink to every program on the real PATH but `tool`."""
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not Path(directory).is_dir():
            continue
        for program in Path(directory).iterdir():
            link = bin_dir / program.name
            if program.name != tool and not link.exists() and os.access(program, os.X_OK):
                link.symlink_to(program)
    assert shutil.which(tool, path=str(bin_dir)) is None
    return str(bin_dir)


def _environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ENGINEKIT_REQUIRE_ALL"}
    env.update(extra)
    return env


HIDDEN_TOOL_SELECTION = ["tests/media/test_isomd5.py", "-k", "test_ours_implant_passes_checkisomd5"]


def test_a_hidden_tool_fails_the_run_where_every_test_is_required(tmp_path: Path) -> None:
    path = _path_without("implantisomd5", tmp_path / "bin")
    env = _environment(PATH=path, ENGINEKIT_REQUIRE_ALL="1")
    proc = _pytest(HIDDEN_TOOL_SELECTION, cwd=REPO, basetemp=tmp_path / "base", env=env)
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    assert "ENGINEKIT_REQUIRE_ALL=1" in proc.stdout
    assert "isomd5sum or xorriso is not installed" in proc.stdout
    assert "skipped" not in proc.stdout.splitlines()[-1]


def test_a_hidden_tool_skips_with_its_reason_otherwise(tmp_path: Path) -> None:
    path = _path_without("implantisomd5", tmp_path / "bin")
    env = _environment(PATH=path)
    proc = _pytest(HIDDEN_TOOL_SELECTION, cwd=REPO, basetemp=tmp_path / "base", env=env)
    assert proc.returncode == pytest.ExitCode.OK, proc.stdout
    assert "1 skipped" in proc.stdout.splitlines()[-1]
    assert "isomd5sum or xorriso is not installed" in proc.stdout


IMPORTORSKIP_AT_COLLECTION = """
import pytest

pytest.importorskip("enginekit_module_that_does_not_exist")


def test_never_runs():
    pass
"""


def test_a_skip_while_collecting_fails_where_every_test_is_required(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "conftest.py")
    (project / "test_optional.py").write_text(IMPORTORSKIP_AT_COLLECTION)
    args = ["--rootdir", str(project), str(project)]
    required = _environment(ENGINEKIT_REQUIRE_ALL="1")
    proc = _pytest(args, cwd=project, basetemp=tmp_path / "base", env=required)
    assert proc.returncode != pytest.ExitCode.OK, proc.stdout
    assert "enginekit_module_that_does_not_exist" in proc.stdout
    assert "ENGINEKIT_REQUIRE_ALL=1" in proc.stdout

    proc = _pytest(args, cwd=project, basetemp=tmp_path / "base2", env=_environment())
    assert proc.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, proc.stdout
    assert "1 skipped" in proc.stdout.splitlines()[-1]


NEEDS_A_DISK = """
def test_gets_a_reference_disk(engine_disk):
    engine_disk("4.5.0", size="1G", with_vms=False)
"""


@pytest.mark.root
@pytest.mark.slow
def test_a_failing_tool_fails_a_plugin_fixture_instead_of_skipping(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), project / "conftest.py")
    (project / "test_disk.py").write_text(NEEDS_A_DISK)
    broken = tmp_path / "broken-bin"
    broken.mkdir()
    mkfs = broken / "mkfs.ext4"
    mkfs.write_text("#!/bin/sh\necho 'mkfs.ext4: broken on purpose' >&2\nexit 1\n")
    mkfs.chmod(0o755)
    env = _environment(PATH=f"{broken}{os.pathsep}{os.environ['PATH']}")
    args = ["--rootdir", str(project), str(project)]
    proc = _pytest(args, cwd=project, basetemp=tmp_path / "base", env=env)
    summary = proc.stdout.splitlines()[-1]
    assert proc.returncode == pytest.ExitCode.TESTS_FAILED, proc.stdout
    assert "skipped" not in summary, proc.stdout
    assert "mkfs.ext4 failed" in proc.stdout, proc.stdout
