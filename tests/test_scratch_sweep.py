"""The scratch sweep touches only its own exact names and never crosses a mount point: with
shared mounts, a killed run's mounts stay in the host namespace, and an empty directory in
the user's mounted filesystem (lost+found) is not ours to rmdir."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from enginekit.process import run
from enginekit.scratch import sweep_stale


def _dead_pid() -> str:
    return subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()


def test_sweep_matches_only_exact_names(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = tmp_path / f"enginekit-mnt-{dead}-abcd1234"
    stale.mkdir()
    look_alikes = [
        tmp_path / f"enginekit-mnt-{dead}-x",  # not a mkdtemp suffix
        tmp_path / f"enginekit-mnt-{dead}-abcd1234-more",
        tmp_path / f"enginekit-mnt-extra-{dead}-abcd1234",  # kind "mnt-extra"
    ]
    for p in look_alikes:
        p.mkdir()
    assert sweep_stale("mnt", tmp_path) == 1
    assert not stale.exists()
    assert all(p.exists() for p in look_alikes)


@pytest.mark.root
def test_sweep_leaves_a_tree_with_a_mount_point_inside(tmp_path: Path) -> None:
    dead = _dead_pid()
    for disposable in (False, True):
        stale = tmp_path / f"enginekit-mnt-{dead}-abcd123{int(disposable)}"
        mountpoint = stale / "slot-a"
        mountpoint.mkdir(parents=True)
        run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)])
        try:
            (mountpoint / "lost+found").mkdir()
            (mountpoint / "data").write_text("user's")
            assert sweep_stale("mnt", tmp_path, disposable=disposable) == 0
            assert (mountpoint / "lost+found").is_dir()
            assert (mountpoint / "data").read_text() == "user's"
        finally:
            run(["umount", str(mountpoint)])
        # Unmounted, the empty tree is ours again.
        assert sweep_stale("mnt", tmp_path, disposable=disposable) == 1
        assert not stale.exists()


_HOLDER = """
import signal, sys, tempfile
tempfile.tempdir = sys.argv[1]
from enginekit.scratch import scratch_file, scratch_tree
with scratch_tree("t") as tree, scratch_file("f") as file:
    print(tree, file.name, flush=True)
    signal.pause()  # held until the test kills us
"""


def test_a_held_tree_or_file_stays_whatever_its_pid_looks_like(tmp_path: Path) -> None:
    """An owner in another PID namespace has a PID that looks dead here: its lock counts."""
    import os
    import sys

    dead = _dead_pid()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        tree_text, file_text = holder.stdout.readline().split()
        # Renamed to a dead PID, as the owner's PID would look from another namespace.
        tree = tmp_path / f"enginekit-t-{dead}-{tree_text[-8:]}"
        file = tmp_path / f"enginekit-f-{dead}-{file_text[-8:]}"
        os.rename(tree_text, tree)
        os.rename(file_text, file)
        (tree / "copy").write_text("in use")
        assert sweep_stale("t", tmp_path, disposable=True) == 0
        assert sweep_stale("f", tmp_path) == 0
        assert (tree / "copy").exists()
        assert file.exists()
    finally:
        holder.kill()
        holder.wait()
    # Its owner is gone: now they are stale.
    assert sweep_stale("t", tmp_path, disposable=True) == 1
    assert sweep_stale("f", tmp_path) == 1
    assert list(tmp_path.iterdir()) == []
