"""The reference medium's boot menu (screen 1) and its check entry.

Both boot loaders show "Install Engine" (the default, booted after the timeout) and "Check
this medium, then install Engine", and no "Upgrade" entry (the default entry booted by the
firmware is the upgrade tests' way in: see below). The check entry runs the embedded MD5
check over the raw medium the machine booted from (the DVD drive or the stick) and installs
nothing from a damaged one. The console has no keyboard here, so the check entry is booted
with the command line its menu entry gives, read from the medium, with the medium's own
kernel and initramfs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from commands.engine_live_check import check_medium
from enginekit.process import require_tool, run_text
from enginekit.qemu import BootResult, BootSpec, Drive, DriveKind, Firmware, boot
from media import eltorito
from media.boot_menu import MENU_TIMEOUT_SECONDS, BootEntry
from media.errors import InvalidISO
from media.medium_device import find_medium
from media.reader import MediumReader
from reference_builds.live_initramfs import live_image_for
from reference_builds.media import reference_iso

from .conftest import written_stick

MiB = 1024 * 1024
VERSION = "5.0.0"
DONE = r"ENGINE DISK |ENGINE BOOT FAILED"  # the installer found the disk, or it stopped
BOOT_TIMEOUT = 600.0  # TCG on a shared 2-core machine: a medium boot can take minutes
# A line of the engined stub, stored once on the medium (a payload file's extent).
PAYLOAD_TEXT = b"nothing to manage in a reference build"


@pytest.fixture(scope="module")
def medium() -> Path:
    return reference_iso(VERSION)


@pytest.fixture(scope="module")
def stick(medium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The reference medium on a stick, as `engine-media usb write` wrote it."""
    backing = written_stick(medium, tmp_path_factory.mktemp("stick") / "stick.img")
    yield backing
    backing.unlink()


def _esp_file(esp: Path, rel: str) -> str:
    return run_text([require_tool("mtype", "mtools"), "-i", str(esp), f"::{rel}"])


def _entry_options(medium: Path, entry: BootEntry) -> str:
    """The kernel command line of `entry` as the medium's isolinux.cfg gives it."""
    with MediumReader.open(medium) as reader:
        cfg = reader.read_bytes(eltorito.ISOLINUX_CFG_PATH).decode()
    label = cfg.split(f"LABEL {entry.value}\n", 1)[1]
    found = re.search(r"^\s*APPEND (.*)$", label, re.MULTILINE)
    assert found is not None, cfg
    return found.group(1)


def _boot_entry(
    medium: Path, entry: BootEntry, drives: tuple[Drive, ...], tmp_path: Path
) -> BootResult:
    """Boot the medium's own kernel and initramfs with `entry`'s command line."""
    with MediumReader.open(medium) as reader:
        (tmp_path / "vmlinuz").write_bytes(reader.read_bytes("boot/vmlinuz"))
        (tmp_path / "initrd.img").write_bytes(reader.read_bytes("boot/initrd.img"))
    spec = BootSpec(
        Firmware.BIOS,
        drives,
        memory_mb=1024,
        kernel=tmp_path / "vmlinuz",
        initrd=tmp_path / "initrd.img",
        append=_entry_options(medium, entry),
    )
    return boot(spec, DONE, timeout=BOOT_TIMEOUT, power_off_wait=0)


def _flip_payload_byte(medium: Path, out: Path) -> Path:
    """A copy of `medium` with one byte flipped inside a payload file."""
    shutil.copyfile(medium, out)
    data = out.read_bytes()
    assert data.count(PAYLOAD_TEXT) == 1
    offset = data.index(PAYLOAD_TEXT)
    with open(out, "r+b") as f:
        f.seek(offset)
        f.write(bytes([data[offset] ^ 0x01]))
    return out


def _machine(tmp_path: Path, medium: Path) -> tuple[Path, Path]:
    """A /sys/block and /dev as the live system sees them: a blank SATA disk, the DVD drive
    holding `medium`, and a loop device over the medium (not hardware: never the medium)."""
    sys_block, dev = tmp_path / "block", tmp_path / "dev"
    for name, hardware in (("loop0", False), ("sda", True), ("sr0", True)):
        (sys_block / name).mkdir(parents=True)
        if hardware:
            (sys_block / name / "device").mkdir()
    dev.mkdir()
    (dev / "sda").write_bytes(bytes(MiB))
    (dev / "sr0").symlink_to(medium)
    (dev / "loop0").symlink_to(medium)
    return sys_block, dev


def test_the_check_reads_the_device_holding_this_versions_volume(
    medium: Path, tmp_path: Path
) -> None:
    sys_block, dev = _machine(tmp_path, medium)
    assert find_medium("ENGINE_5_0_0", sys_block, dev).path == dev / "sr0"
    with pytest.raises(InvalidISO) as caught:
        find_medium("ENGINE_4_5_0", sys_block, dev)
    assert "sr0=ENGINE_5_0_0" in caught.value.message
    assert "loop0" not in caught.value.message


def test_the_check_reports_passed_on_a_good_medium_and_failed_on_a_damaged_one(
    medium: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert check_medium(VERSION, *_machine(tmp_path / "good", medium)) is True
    assert "ENGINE MEDIUM CHECK PASSED device=" in capsys.readouterr().out
    damaged = _flip_payload_byte(medium, tmp_path / "damaged.iso")
    assert check_medium(VERSION, *_machine(tmp_path / "bad", damaged)) is False
    out = capsys.readouterr().out
    assert "ENGINE MEDIUM CHECK FAILED device=" in out
    assert "does not match" in out
    assert "PASSED" not in out


def _lines(result: BootResult) -> list[str]:
    return [line.strip() for line in result.output.splitlines()]


def test_the_medium_boots_the_live_installer_from_both_menus(medium: Path, tmp_path: Path) -> None:
    live = live_image_for(VERSION)
    with MediumReader.open(medium) as reader:
        assert reader.read_bytes("boot/vmlinuz") == live.kernel.vmlinuz.read_bytes()
        assert reader.read_bytes("boot/initrd.img") == live.initrd.read_bytes()
        cfg = reader.read_bytes(eltorito.ISOLINUX_CFG_PATH).decode()
        esp = tmp_path / "efiboot.img"
        esp.write_bytes(reader.read_bytes(eltorito.ESP_IMAGE_PATH))
    # BIOS: isolinux's menu, on the serial console too, the install entry after 3 s.
    assert "UI menu.c32" in cfg
    assert "SERIAL 0 115200" in cfg
    assert f"TIMEOUT {MENU_TIMEOUT_SECONDS * 10}" in cfg
    assert "DEFAULT install" in cfg
    labels = re.findall(r"MENU LABEL (.*)", cfg)
    assert labels == ["Install Engine", "Check this medium, then install Engine"]
    assert "upgrade" not in cfg.lower()
    # UEFI: systemd-boot's loader.conf and one entry file per menu entry, same titles.
    loader = _esp_file(esp, "loader/loader.conf")
    assert f"timeout {MENU_TIMEOUT_SECONDS}" in loader.splitlines()
    assert "default install.conf" in loader.splitlines()
    entries = run_text([require_tool("mdir", "mtools"), "-b", "-i", str(esp), "::loader/entries"])
    assert sorted(Path(p).name for p in entries.split()) == ["check.conf", "install.conf"]
    check = _esp_file(esp, "loader/entries/check.conf")
    install = _esp_file(esp, "loader/entries/install.conf")
    assert "title Check this medium, then install Engine" in check.splitlines()
    assert "title Install Engine" in install.splitlines()
    assert "engine.entry=check" in check
    assert "engine.entry=install" in install
    assert "upgrade" not in (loader + check + install).lower()


# The default entry booted by the firmware, to the end of an upgrade: from a DVD on BIOS in
# tests/live/test_live_upgrade.py, from a stick on BIOS and UEFI in test_unattended_medium.py,
# from a DVD on UEFI in test_boot_from_medium.py.


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_the_check_entry_passes_a_good_stick_and_goes_on(
    medium: Path, stick: Path, engine_disk: Callable[..., Path], tmp_path: Path
) -> None:
    drives = (
        Drive(stick, DriveKind.USB, snapshot=True),
        Drive(engine_disk("4.5.0", with_vms=False), DriveKind.NVME, snapshot=True),
    )
    result = _boot_entry(medium, BootEntry.CHECK, drives, tmp_path)
    lines = _lines(result)
    passed = [line for line in lines if line.startswith("ENGINE MEDIUM CHECK PASSED")]
    assert passed, result.tail(15)
    assert passed[0].startswith("ENGINE MEDIUM CHECK PASSED device=/dev/sd")
    assert result.matched == "ENGINE DISK /dev/nvme0n1 version=4.5.0", result.tail(15)
    assert lines.index(passed[0]) < lines.index(result.matched)


@pytest.mark.root
@pytest.mark.qemu
@pytest.mark.slow
def test_the_check_entry_stops_on_a_damaged_dvd(
    medium: Path, engine_disk: Callable[..., Path], tmp_path: Path
) -> None:
    damaged = _flip_payload_byte(medium, tmp_path / "damaged.iso")
    drives = (
        Drive(damaged, DriveKind.CDROM),
        Drive(engine_disk("4.5.0", with_vms=False), DriveKind.NVME, snapshot=True),
    )
    result = _boot_entry(damaged, BootEntry.CHECK, drives, tmp_path)
    lines = _lines(result)
    failed = [line for line in lines if line.startswith("ENGINE MEDIUM CHECK FAILED")]
    assert failed, result.tail(15)
    assert "device=/dev/sr0" in failed[0]
    assert "does not match" in failed[0]
    assert result.matched == "ENGINE BOOT FAILED reason=medium-check", result.tail(15)
    assert not any(line.startswith("ENGINE DISK") for line in lines)
    assert not any("PASSED" in line for line in lines)
