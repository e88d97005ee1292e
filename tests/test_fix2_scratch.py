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
    assert not stale.exists() and all(p.exists() for p in look_alikes)


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
