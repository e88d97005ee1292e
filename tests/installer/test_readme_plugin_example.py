"""The pytest-plugin example from the README, kept here verbatim so it cannot go stale."""

import subprocess
import sys

import pytest

from reference_builds.pytest_plugin import vm_disk_digests

UPGRADE = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "upgrade"\n'


@pytest.mark.root
def test_upgrade_keeps_every_vm_disk(engine_disk, engine_medium, tmp_path):  # type: ignore[no-untyped-def]
    disk = engine_disk("4.5.0", size="2G")  # a fresh reference disk with 4 VMs, yours to change
    iso = engine_medium("5.0.0")  # the cached reference medium (read-only)
    answers = tmp_path / "upgrade.toml"
    answers.write_text(UPGRADE)
    before = vm_disk_digests(disk)
    command = [sys.executable, "-m", "commands.engine_install", "--media", iso, "--target", disk]
    subprocess.run([*command, "--answers", answers], check=True)
    assert vm_disk_digests(disk) == before
