"""Each process that runs tests keeps its mounts to itself.

A mount in the host's namespace would be copied into every mount namespace created while it
exists (another xdist worker's, or the one the product makes for its own mounts), and the copy
would keep the test's loop device busy after the test unmounted it."""

from __future__ import annotations

from pathlib import Path

import pytest

from enginekit.process import run


@pytest.mark.root
def test_a_mount_made_by_a_test_is_not_in_the_host_namespace(tmp_path: Path) -> None:
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mountpoint])
    try:
        with open("/proc/self/mounts") as ours:
            assert str(mountpoint) in ours.read()
        with open("/proc/1/mounts") as host:
            assert str(mountpoint) not in host.read()
    finally:
        run(["umount", mountpoint])
