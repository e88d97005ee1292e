"""Fixtures shared by the installer's command-line tests: the real 5.0.0 medium and a blank
target disk of the smallest size Engine accepts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from enginekit.process import run


def engine_install(*args: object) -> tuple[int, str, str]:
    """`engine-install ARGS` run as a program: (exit status, stdout, stderr)."""
    proc = run(
        [sys.executable, "-m", "commands.engine_install", *map(str, args)], check=False, timeout=300
    )
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


@pytest.fixture(scope="module")
def iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from reference_builds.media import reference_iso
    from reference_builds.pytest_plugin import copy_sparse

    # A copy of our own (reflinked where the file system can): the cache drops stale ISOs
    # when the media code changes, and a hard link would share the inode, so a test that
    # changed its medium would change the shared cached one.
    private = tmp_path_factory.mktemp("medium") / "engine-5.0.0.iso"
    return copy_sparse(reference_iso("5.0.0"), private)


@pytest.fixture
def blank(tmp_path: Path) -> Path:
    disk = tmp_path / "blank.img"
    with disk.open("wb") as stream:
        stream.truncate(512 << 20)  # the smallest disk Engine accepts
    return disk
