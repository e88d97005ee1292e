"""The live installer upgrades the computer's own disk unattended, then the disk boots alone.

A BIOS computer boots the unattended 5.0.0 medium from its DVD drive through isolinux's menu;
in the other tests the live kernel and initramfs boot straight from QEMU (-kernel/-initrd),
the medium in the DVD drive (the reference ISO remastered with an answer file by
`engine-media remaster`: the live installer reads the answers and the payload from it) and the
Engine disk on the SATA or NVMe bus. The events come from the second serial port.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from commands.engine_disk import main as engine_disk_main
from commands.live_events import read_events
from disk_images.image import create_image
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from enginekit.qemu import BootResult, BootSpec, Drive, DriveKind, Firmware, boot
from reference_builds.live_initramfs import LiveImage
from reference_builds.pytest_plugin import (
    EngineDiskFactory,
    EngineMediumFactory,
    sparse_digest,
    vm_disk_digests,
)

from .conftest import UPGRADE_ANSWERS, unattended_medium

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]


def _run_live(
    tmp_path: Path,
    live: LiveImage,
    drives: tuple[Drive, ...],
    *,
    run: str = "run",
    power_off_when: Callable[[list[dict[str, Any]]], bool] | None = None,
    through_boot_menu: bool = False,
) -> tuple[BootResult, list[dict[str, Any]]]:
    """Boot the live installer until it reboots or powers the machine off, or until the
    events so far satisfy `power_off_when`: then QEMU is killed, as a pulled plug.
    `through_boot_menu`: SeaBIOS boots the first drive (the DVD), and its isolinux menu the
    default entry; else QEMU loads the live kernel itself."""
    events_log = tmp_path / f"{run}-events.jsonl"
    spec = BootSpec(Firmware.BIOS, drives, memory_mb=1024, events_log=events_log)
    if not through_boot_menu:
        spec = replace(spec, kernel=live.kernel.vmlinuz, initrd=live.initrd, append=live.append)
    # Nothing on the console ends the run: the guest reboots (QEMU runs with -no-reboot) or
    # powers off by itself.
    stop = None
    if power_off_when is not None:
        when = power_off_when

        def stop() -> bool:
            return events_log.exists() and when(read_events(events_log.read_bytes()))

    result = boot(spec, r"ENGINE BOOT FAILED", timeout=400, stop=stop)
    events = read_events(events_log.read_bytes())
    return result, events


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def _installed(disk: Path) -> Installation:
    found = probe(disk)
    assert isinstance(found, Installation), found
    return found


def test_a_bios_computer_started_from_the_dvd_upgrades_its_sata_disk_which_then_boots_alone(
    tmp_path: Path,
    live_installer: LiveImage,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """SeaBIOS boots the DVD; isolinux's menu (screen 1, on the serial console too) starts
    its default entry, "Install Engine", after its timeout; the live installer upgrades."""
    disk = engine_disk("4.5.0")
    vms_before = vm_disk_digests(disk)
    medium = unattended_medium(tmp_path, engine_medium("5.0.0"), UPGRADE_ANSWERS)
    drives = (Drive(medium, DriveKind.CDROM), Drive(disk, DriveKind.SATA))
    result, events = _run_live(tmp_path, live_installer, drives, through_boot_menu=True)
    assert result.powered_off, result.tail(20)
    assert result.matched is None, result.tail(20)
    lines = [line.strip() for line in result.output.splitlines()]
    assert "ENGINE INSTALLER BOOTED version=5.0.0 firmware=bios" in lines, result.tail(20)
    for shown in ("Install Engine", "Check this medium, then install Engine", "Automatic boot in"):
        assert shown in result.output
    assert not any(line.startswith("ENGINE MEDIUM CHECK") for line in lines)
    names = _names(events)
    assert names[:1] == ["booted"], result.tail(40)
    assert names[-2:] == ["finished", "rebooting"], events
    assert all(isinstance(e["t"], float) for e in events)
    screens = [e["screen"] for e in events if e["event"] == "screen"]
    assert screens[:4] == ["boot", "welcome", "eula", "keyboard"], screens
    assert "existing" in screens
    answer = next(e for e in events if e["event"] == "answers")
    assert answer["source"] == "/dev/sr0: engine/answers.toml"  # read from the medium
    disks = next(e for e in events if e["event"] == "disks")
    assert disks["medium"] == "/dev/sr0"
    assert [d["device"] for d in disks["disks"]] == ["/dev/sda"]
    finished = events[-2]
    assert (finished["version"], finished["slot"]) == ("5.0.0", "B")
    assert finished["upgrade_status"] == "Installed (Reboot Required)"
    assert "step" in names

    # Its own kernel finds it on the same bus: SATA.
    assert engine_disk_main(["boot", str(disk), "--disk-bus", "sata"]) == 0
    assert "ENGINE RUNNING version=5.0.0 slot=B vms=4" in capsys.readouterr().out
    after = _installed(disk)
    assert after.version == "5.0.0"
    assert after.state.pending_slot is None
    assert vm_disk_digests(disk) == vms_before


def test_with_two_disks_only_the_engine_disk_named_by_its_id_changes(
    tmp_path: Path,
    live_installer: LiveImage,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
) -> None:
    disk = engine_disk("4.5.0", with_vms=False)
    other = create_image(tmp_path / "other.img", 1 << 30)
    other_before = sparse_digest(other)
    disk_id = _installed(disk).disk_id
    answers = UPGRADE_ANSWERS.replace("reboot = true", "reboot = false")
    answers += f'\n[disk]\ntarget = "{disk_id}"\n'
    drives = (
        Drive(other, DriveKind.NVME),
        Drive(disk, DriveKind.SATA),
        Drive(unattended_medium(tmp_path, engine_medium("5.0.0"), answers), DriveKind.CDROM),
    )
    result, events = _run_live(tmp_path, live_installer, drives)
    assert result.powered_off, result.tail(20)
    assert result.matched is None, result.tail(20)
    offered = next(e for e in events if e["event"] == "disks")["disks"]
    assert [d["device"] for d in offered] == ["/dev/nvme0n1", "/dev/sda"]
    assert _names(events)[-1] == "finished", events  # reboot = false: it powers off
    assert events[-1]["device"] == "/dev/sda"
    assert _installed(disk).upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    assert sparse_digest(other) == other_before


def test_a_4_0_0_disk_is_refused_with_nothing_written(
    tmp_path: Path,
    live_installer: LiveImage,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
) -> None:
    disk = engine_disk("4.0.0", with_vms=False)
    before = sparse_digest(disk)
    medium = unattended_medium(tmp_path, engine_medium("5.0.0"), UPGRADE_ANSWERS)
    drives = (Drive(disk, DriveKind.SATA), Drive(medium, DriveKind.CDROM))
    result, events = _run_live(tmp_path, live_installer, drives)
    assert result.matched == "ENGINE BOOT FAILED reason=engine-live", result.tail(20)
    failed = events[-1]
    assert failed["event"] == "failed", events
    assert "4.5.0 first" in failed["error"]
    assert "install_started" not in _names(events)
    assert "step" not in _names(events)
    assert sparse_digest(disk) == before


# The upgrade's steps up to the one that points the boot entry at the new slot: powered off
# during any of them, the computer boots its old Engine.
BEFORE_THE_SWITCH = ("write-slot", "verify-slot", "write-esp-kernel", "write-config", "update-vms")


def _slot_being_written(events: list[dict[str, Any]]) -> bool:
    """The new slot's first payload file is written (the second write-slot step event)."""
    return sum(1 for e in events if e["event"] == "step" and e["step"] == "write-slot") >= 2


def test_powered_off_while_the_new_slot_is_written_the_disk_boots_and_a_rerun_completes(
    tmp_path: Path,
    live_installer: LiveImage,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The upgrade engine's promise inside the computer: the power goes (QEMU killed) while
    the live installer writes the new slot; the disk boots its 4.5.0 alone, its VM disks as
    they were; the same medium started again completes the upgrade, and 5.0.0 boots."""
    disk = engine_disk("4.5.0")
    vms_before = vm_disk_digests(disk)
    medium = unattended_medium(tmp_path, engine_medium("5.0.0"), UPGRADE_ANSWERS)
    drives = (Drive(disk, DriveKind.NVME), Drive(medium, DriveKind.CDROM))
    result, events = _run_live(
        tmp_path, live_installer, drives, run="cut", power_off_when=_slot_being_written
    )
    assert result.timed_out, result.tail(20)  # stopped by us, not by the guest
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps[-1] in BEFORE_THE_SWITCH, steps  # where the power went
    assert "finished" not in _names(events)

    assert engine_disk_main(["boot", str(disk)]) == 0
    assert "ENGINE RUNNING version=4.5.0 slot=A vms=4" in capsys.readouterr().out
    assert vm_disk_digests(disk) == vms_before

    result, events = _run_live(tmp_path, live_installer, drives, run="again")
    assert result.powered_off, result.tail(20)
    assert _names(events)[-2:] == ["finished", "rebooting"], events
    assert engine_disk_main(["boot", str(disk)]) == 0
    assert "ENGINE RUNNING version=5.0.0 slot=B vms=4" in capsys.readouterr().out
    assert _installed(disk).upgrade_status is UpgradeStatus.BLANK
    assert vm_disk_digests(disk) == vms_before
