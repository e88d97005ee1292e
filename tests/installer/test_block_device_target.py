"""The install engine writes a disk given as a block device, as the live installer sees the
computer's disk, through the same session code as an image file."""

from __future__ import annotations

import pytest

from disk_images.loop import LoopDevice
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from installer.answers import parse_answers
from installer.frontends.api import Installer, load_medium, load_target
from installer.frontends.unattended import drive
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory

pytestmark = [pytest.mark.root]

UPGRADE = b'[eula]\naccept = true\n[existing]\naction = "upgrade"\n[disk]\ntarget = "{disk}"\n'


def test_upgrade_onto_a_block_device(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", with_vms=False)
    with LoopDevice(disk) as loop:
        device = loop.device
        target = load_target(device, block_device=True)
        assert target.block_device
        answers = parse_answers(UPGRADE.replace(b"{disk}", str(device).encode()), "a")
        installer = Installer(load_medium(engine_medium("5.0.0")), target)
        report = drive(installer, answers)
    assert report is not None
    assert (report.installed_version, report.slot) == ("5.0.0", "B")
    assert report.plan.target == device
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    assert found.state.pending_slot is not None
