"""`inspect` lists everything a boot needs from the ESP that is missing, and `engine-disk boot`
refuses before QEMU when no entry can boot, warns when only some can, and reports the entry
that really booted. Real reference disks, damaged the way a user's disk gets damaged."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from disk_images.layout import PartitionRole, partition_number
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from enginekit.versions import DiskLayout

pytestmark = [pytest.mark.root]


def _problems(disk: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert engine_disk_main(["inspect", str(disk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["engine"] is not None, doc
    return list(doc["problems"])


def _remove(disk: Path, *paths: str) -> None:
    with open_installation(disk) as session:
        for path in paths:
            session.esp.remove(path)


def _refused(disk: Path, capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """The error line and the hint of a refused boot."""
    assert engine_disk_main(["boot", str(disk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2, err
    assert err[1].startswith("hint: "), err
    return err[0], err[1]


def test_zeroed_esp_is_a_problem_and_boot_refuses(
    engine_disk: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    found = probe(disk)
    assert isinstance(found, Installation)
    number = partition_number(DiskLayout.GPT_AB, PartitionRole.ESP)
    esp = next(p for p in found.partitions if p.number == number)
    with open(disk, "r+b") as image:
        image.seek(esp.start_bytes)
        image.write(bytes(esp.size_bytes))
    expected = "ESP: no readable FAT filesystem (the firmware cannot start a boot loader)"
    assert _problems(disk, capsys) == [expected]
    error, hint = _refused(disk, capsys)
    assert error == f"error: {disk}: cannot boot: {expected}"
    # No install can write to an ESP without a filesystem (the upgrade's own check refuses
    # it), so the hint is what brings the disk back, not a repair.
    assert hint == (
        "hint: the ESP holds no filesystem a repair could write to: restore the disk from a "
        'backup, or erase and reinstall from the Engine medium (engine-install, action = "erase"; '
        "the VMs are lost)"
    )


def test_entries_whose_files_are_missing_are_each_listed(
    engine_disk: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    _remove(disk, "/engine/b/vmlinuz", "/engine/a/initrd.img", "/loader/loader.conf")
    problems = _problems(disk, capsys)
    assert problems == [
        "ESP: /loader/loader.conf is missing (systemd-boot ignores 'default engine-*')",
        "ESP: /loader/entries/engine-0-b.conf: its kernel /engine/b/vmlinuz is missing",
        "ESP: /loader/entries/engine-1-a.conf: its initrd /engine/a/initrd.img is missing",
        "ESP: no boot entry can boot",
    ]
    assert _refused(disk, capsys)[0].startswith(f"error: {disk}: cannot boot: ESP: ")


def test_missing_firmware_loader_refuses_the_boot(
    engine_disk: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    _remove(disk, "/EFI/BOOT/BOOTX64.EFI")
    assert _problems(disk, capsys) == [
        "ESP: /EFI/BOOT/BOOTX64.EFI is missing (the firmware has no boot loader)"
    ]
    error, hint = _refused(disk, capsys)
    assert "BOOTX64.EFI is missing" in error
    assert hint == (
        "hint: repair the installation from a medium of the installed version "
        '(engine-install, action = "repair")'
    )


@pytest.mark.qemu
@pytest.mark.slow
def test_boot_warns_and_reports_the_entry_that_really_booted(
    engine_disk: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    _remove(disk, "/engine/a/vmlinuz")
    assert _problems(disk, capsys) == [
        "ESP: /loader/entries/engine-1-a.conf: its kernel /engine/a/vmlinuz is missing"
    ]
    assert engine_disk_main(["boot", str(disk)]) == 0
    out = capsys.readouterr().out
    assert "boot 1 via engine-0-b.conf: ENGINE RUNNING version=4.5.0 slot=B" in out
    assert "warning: ESP: /loader/entries/engine-1-a.conf: its kernel" in out
    assert "warning: slot A did not boot; slot B booted instead and is now the active slot" in (out)
