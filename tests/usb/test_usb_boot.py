"""A stick written by `engine-media usb write` boots as real USB mass storage, BIOS and UEFI.

The reference 5.0.0 ISO (the marker-only kind: the firmware's path is what is tested here;
the live installer's medium boots from a stick in tests/live/test_medium_boot_menu.py) is
written to a loop device that first carried a GPT of its own (a stale backup table at the end
is what confuses firmware), then QEMU boots the block device itself, `/dev/loopN`, behind an
xHCI controller as a usb-storage device, so what boots is exactly what was written.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_media import main
from enginekit.process import require_tool, run
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.media import reference_iso
from reference_builds.payload import InstallerImage

pytestmark = [pytest.mark.root, pytest.mark.qemu]

MiB = 1024 * 1024


@pytest.fixture
def written_stick(
    loop_device: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    iso = reference_iso("5.0.0", InstallerImage.MARKER)
    size = (iso.stat().st_size // MiB + 64) * MiB  # a stick is bigger than the image
    stick = loop_device(size)
    run(
        [require_tool("sfdisk", "fdisk"), "-q", stick],
        input=b"label: gpt\nsize=16M, type=L\n",
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    status = main(["usb", "write", "--force", "--yes", str(iso), str(stick)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert " ok " in out
    with open(stick, "rb") as device:
        device.seek(size - MiB)
        assert device.read(MiB) == bytes(MiB), "the old backup GPT survived"
    return stick


@pytest.mark.parametrize("firmware", [Firmware.BIOS, Firmware.UEFI])
def test_written_stick_boots_as_usb_storage(written_stick: Path, firmware: Firmware) -> None:
    spec = BootSpec(firmware=firmware, drives=(Drive(written_stick, DriveKind.USB, snapshot=True),))
    result = boot(spec, r"ENGINE (INSTALLER BOOTED|BOOT FAILED)", timeout=120)
    assert result.matched == f"ENGINE INSTALLER BOOTED version=5.0.0 firmware={firmware}", (
        result.tail()
    )
    assert result.powered_off, "the marker init powers the machine off after its line"
