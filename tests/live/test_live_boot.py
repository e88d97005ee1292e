"""The live installer boots from RAM and finds a reference Engine disk on a laptop's buses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.live_initramfs import LiveImage

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]

MARKER = "ENGINE INSTALLER BOOTED version=4.5.0 firmware=bios"


def _boot_with_disk(live_image: LiveImage, disk: Path, kind: DriveKind) -> list[str]:
    spec = BootSpec(
        firmware=Firmware.BIOS,
        drives=(Drive(disk, kind, snapshot=True),),
        memory_mb=1024,
        kernel=live_image.kernel.vmlinuz,
        initrd=live_image.initrd,
        append=live_image.append,
    )
    result = boot(spec, r"ENGINE DISK |ENGINE BOOT FAILED", timeout=300)
    assert result.matched is not None, result.tail(15)
    return [line.strip() for line in result.lines]


@pytest.mark.parametrize(
    ("kind", "device"), [(DriveKind.SATA, "/dev/sda"), (DriveKind.NVME, "/dev/nvme0n1")]
)
def test_live_installer_reads_the_engine_disk(
    live_image: LiveImage, engine_disk: Callable[..., Path], kind: DriveKind, device: str
) -> None:
    lines = _boot_with_disk(live_image, engine_disk("4.5.0", with_vms=False), kind)
    assert MARKER in lines
    assert f"ENGINE DISK {device} version=4.5.0" in lines
