"""An unattended medium, the way a technician uses one: the reference 5.0.0 ISO remastered
with an answer file (`engine-media remaster`), written to a stick (`engine-media usb write`),
and a UEFI computer with a 4.5.0 disk on NVMe started from the stick. Its boot menu's default
entry starts the live installer, which reads the answers from the stick, upgrades the disk
with no keyboard and restarts the computer; the disk then boots alone into 5.0.0. The stick
is only read, so the same stick goes on to the next computer of the lab. On a BIOS computer
the stick's isolinux menu does the same for a disk on SATA."""

from __future__ import annotations

from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from commands.engine_media import main as engine_media
from commands.live_events import read_events
from disk_images.probe import Installation, probe
from enginekit.qemu import BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.pytest_plugin import (
    EngineDiskFactory,
    EngineMediumFactory,
    sparse_digest,
    vm_disk_digests,
)

from .conftest import UPGRADE_ANSWERS, unattended_medium, written_stick

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


def test_a_stick_with_baked_answers_upgrades_an_nvme_disk_on_uefi_and_stays_unchanged(
    tmp_path: Path,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    unattended = unattended_medium(tmp_path, engine_medium("5.0.0"), UPGRADE_ANSWERS)
    assert engine_media(["verify", str(unattended)]) == 0
    capsys.readouterr()
    stick = written_stick(unattended, tmp_path / "stick.img")
    stick_before = sparse_digest(stick)
    disk = engine_disk("4.5.0")
    vms_before = vm_disk_digests(disk)

    events_log = tmp_path / "events.jsonl"
    spec = BootSpec(
        Firmware.UEFI,
        (Drive(stick, DriveKind.USB), Drive(disk, DriveKind.NVME)),
        memory_mb=1024,
        events_log=events_log,
    )
    # Nothing on the console ends the run: the installer restarts the computer (QEMU runs
    # with -no-reboot, so it stops there).
    result = boot(spec, r"ENGINE BOOT FAILED", timeout=600)
    assert result.powered_off, result.tail(20)
    assert result.matched is None, result.tail(20)
    lines = [line.strip() for line in result.output.splitlines()]
    assert "ENGINE INSTALLER BOOTED version=5.0.0 firmware=uefi" in lines  # the default entry
    assert "ENGINE DISK /dev/nvme0n1 version=4.5.0" in lines
    assert not any(line.startswith("ENGINE MEDIUM CHECK") for line in lines)
    events = read_events(events_log.read_bytes())
    names = [e["event"] for e in events]
    assert names[-2:] == ["finished", "rebooting"], events
    (answer,) = [e for e in events if e["event"] == "answers"]
    assert answer["source"].endswith(": engine/answers.toml")
    assert answer["disk"] == "/dev/nvme0n1"
    assert (events[-2]["version"], events[-2]["slot"]) == ("5.0.0", "B")

    assert engine_disk_main(["boot", str(disk)]) == 0
    assert "ENGINE RUNNING version=5.0.0 slot=B vms=4" in capsys.readouterr().out
    after = probe(disk)
    assert isinstance(after, Installation)
    assert (after.version, after.state.pending_slot) == ("5.0.0", None)
    assert vm_disk_digests(disk) == vms_before
    assert sparse_digest(stick) == stick_before  # ready for the next computer


def test_on_bios_the_stick_s_isolinux_menu_starts_the_upgrade_of_a_sata_disk(
    tmp_path: Path,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same stick on a BIOS computer (SeaBIOS boots its hybrid MBR, isolinux shows the
    menu) with the disk on SATA: the default entry, taken by the menu's timeout, upgrades
    the disk; the answers say not to restart, so the computer powers off."""
    answers = UPGRADE_ANSWERS.replace("reboot = true", "reboot = false")
    stick = written_stick(
        unattended_medium(tmp_path, engine_medium("5.0.0"), answers), tmp_path / "stick.img"
    )
    stick_before = sparse_digest(stick)
    disk = engine_disk("4.5.0", with_vms=False)
    events_log = tmp_path / "events.jsonl"
    spec = BootSpec(
        Firmware.BIOS,
        (Drive(stick, DriveKind.USB), Drive(disk, DriveKind.SATA)),
        memory_mb=1024,
        events_log=events_log,
    )
    result = boot(spec, r"ENGINE BOOT FAILED", timeout=600)
    assert result.powered_off, result.tail(20)
    assert result.matched is None, result.tail(20)
    assert "Automatic boot in" in result.output  # isolinux's menu, on the serial console
    lines = [line.strip() for line in result.output.splitlines()]
    assert "ENGINE INSTALLER BOOTED version=5.0.0 firmware=bios" in lines
    assert "ENGINE DISK /dev/sda version=4.5.0" in lines
    events = read_events(events_log.read_bytes())
    answers_given = [(e["screen"], e["answer"]) for e in events if e["event"] == "answer"]
    assert answers_given[0] == ("boot", "install")  # screen 1: the menu's default entry
    assert [e["event"] for e in events][-1] == "finished", events
    assert events[-1]["device"] == "/dev/sda"

    assert engine_disk_main(["boot", str(disk), "--disk-bus", "sata"]) == 0
    assert "ENGINE RUNNING version=5.0.0 slot=B" in capsys.readouterr().out
    assert sparse_digest(stick) == stick_before
