"""The installed reference Engine finds its own disk on the buses a computer attaches it by:
SATA (AHCI) and NVMe as in a laptop, virtio as in a virtual machine, on UEFI (gpt-ab disks)
and on BIOS (the 4.0.0 MBR layout). Its kernel is the live installer's, so a disk the live
installer upgraded on SATA boots there too (tests/live covers that path)."""

from __future__ import annotations

import pytest

from disk_images.boot import boot_installed_disk
from disk_images.layout import Slot
from enginekit.qemu import DriveKind, Firmware
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root, pytest.mark.qemu]


@pytest.mark.parametrize(
    ("version", "bus"),
    [("5.0.0", DriveKind.SATA), ("5.0.0", DriveKind.NVME), ("4.0.0", DriveKind.SATA)],
)
def test_the_installed_engine_boots_from_its_disk_on_the_bus(
    engine_disk: EngineDiskFactory, version: str, bus: DriveKind
) -> None:
    disk = engine_disk(version, size="1G", with_vms=False)
    result = boot_installed_disk(disk, bus=bus)
    (attempt,) = result.attempts  # one power-on: no fallback, no retry
    assert attempt.failure is None, attempt.console_tail
    assert (attempt.version, attempt.slot) == (version, Slot.A)
    expected = Firmware.BIOS if version == "4.0.0" else Firmware.UEFI
    assert result.firmware is expected
