"""The installed reference Engine finds its own disk on the buses a computer attaches it by.
Its kernel is the live installer's, with the AHCI, NVMe and virtio drivers: every other disk
boot in the suite is on virtio, tests/live boots upgraded gpt-ab disks alone on SATA and on
NVMe (UEFI), and this one covers BIOS: the 4.0.0 MBR layout on SATA."""

from __future__ import annotations

import pytest

from disk_images.boot import boot_installed_disk
from disk_images.layout import Slot
from enginekit.qemu import DriveKind, Firmware
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root, pytest.mark.qemu]


def test_a_4_0_0_engine_boots_from_its_disk_on_sata_with_bios(
    engine_disk: EngineDiskFactory,
) -> None:
    disk = engine_disk("4.0.0", size="1G", with_vms=False)
    result = boot_installed_disk(disk, bus=DriveKind.SATA)
    (attempt,) = result.attempts  # one power-on: no fallback, no retry
    assert attempt.failure is None, attempt.console_tail
    assert (attempt.version, attempt.slot) == ("4.0.0", Slot.A)
    assert result.firmware is Firmware.BIOS
