"""Real boots of the reference 5.0.0 ISO: BIOS and UEFI, each from a CD drive and from a hard
disk (the ISO written raw), all four must print the installer's marker line."""

from __future__ import annotations

from pathlib import Path

import pytest

from enginekit.qemu import DriveKind, Firmware
from media.iso_builder import build_iso
from media.verify import BOOT_PATHS, boot_path, verify_iso
from reference_builds.initramfs import installer_initramfs
from reference_builds.kernel import cached_kernel

from .conftest import SmallPayload

pytestmark = [pytest.mark.qemu, pytest.mark.slow]


def test_reference_iso_boots_on_all_four_paths(reference_iso_5: Path) -> None:
    report = verify_iso(reference_iso_5, boot=True, timeout=300)
    assert report.ok, report.failures()
    assert [(b.firmware, b.drive) for b in report.boots] == [
        (str(fw), str(kind)) for fw, kind in BOOT_PATHS
    ]
    for boot in report.boots:
        assert boot.marker == f"ENGINE INSTALLER BOOTED version=5.0.0 firmware={boot.firmware}"
        assert boot.seconds < 300
    as_json = report.to_dict()["boots"]
    assert [b["path"] for b in as_json] == [
        "bios from CD", "bios from disk", "uefi from CD", "uefi from disk",
    ]  # fmt: skip


def test_a_wrong_marker_is_reported(small_payload: SmallPayload, tmp_path: Path) -> None:
    """An installer that says it is 4.5.0 on a 5.0.0 medium fails, and the report says why."""
    kernel = cached_kernel()
    assert kernel is not None
    payload = small_payload(
        {
            "boot/vmlinuz": kernel.vmlinuz.read_bytes(),
            "boot/initrd.img": installer_initramfs("4.5.0"),
        }
    )
    iso = tmp_path / "mismatch.iso"
    build_iso(payload, iso)
    result = boot_path(iso, Firmware.BIOS, DriveKind.CDROM, "5.0.0", timeout=120)
    assert not result.ok
    assert result.problem == "printed version=4.5.0, expected 5.0.0"
    assert result.marker == "ENGINE INSTALLER BOOTED version=4.5.0 firmware=bios"
