"""`engine-disk boot`: real QEMU boots of installed disks (SeaBIOS + extlinux for the 4.0.0
MBR layout, OVMF + systemd-boot for A/B), and clear errors for disks that hold no Engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from disk_images.image import create_image
from disk_images.layout import BootEntryName, Slot
from reference_builds.pytest_plugin import EngineDiskFactory

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


def test_boot_mbr_disk(engine_disk: EngineDiskFactory, capsys: pytest.CaptureFixture[str]) -> None:
    disk = engine_disk("4.0.0", size="1G")
    assert engine_disk_main(["boot", str(disk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["firmware"] == "bios"
    assert doc["running"] == {
        "version": "4.0.0",
        "slot": "A",
        "vms": 4,
        "entry": None,
        "failure": None,
        "seconds": doc["running"]["seconds"],
    }
    assert doc["upgrade_status"] == ""


def test_boot_of_a_blank_disk_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    disk = create_image(tmp_path / "blank.img", 600 * 1024 * 1024)
    assert engine_disk_main(["boot", str(disk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ")
    assert "no Engine installation" in err[0]
    assert "Traceback" not in "\n".join(err)


def test_boot_order_model() -> None:
    from disk_images.boot import boot_order

    names = [
        BootEntryName(1, Slot.A),
        BootEntryName(2, Slot.B, 0, 1),
        BootEntryName(0, Slot.B),
    ]
    assert [n.file_name for n in boot_order(names)] == [
        "engine-1-a.conf",
        "engine-0-b.conf",
        "engine-2-b+0-1.conf",
    ]
    assert boot_order([BootEntryName(9, Slot.A), BootEntryName(10, Slot.B, 1, 0)])[0].slot is Slot.B
