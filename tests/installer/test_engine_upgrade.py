"""Upgrade and repair through run_plan: the new Engine in the inactive slot, a counting boot
entry, the status, VM records, and VM disks left byte for byte alone."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from disk_images.layout import Slot
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from disk_images.state import UpgradeStatus, VmKind, VmRecord
from enginekit.errors import HostError
from installer.engine import run_plan
from installer.engine.checkpoints import UPGRADE_STEPS
from installer.plan import InstallMode, InstallPlan, Registration, RegistrationMode, Secret
from reference_builds.disk import SampleVm, add_sample_vms
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory, vm_disk_digests

pytestmark = [pytest.mark.root]
MIB = 1024 * 1024


def _plan(medium: Path, disk: Path, mode: InstallMode, version: str, **kw: object) -> InstallPlan:
    return InstallPlan(
        medium=medium,
        target=disk,
        mode=mode,
        target_version=version,
        eula_accepted=True,
        **kw,  # type: ignore[arg-type]
    )


def _installation(disk: Path) -> Installation:
    found = probe(disk)
    assert isinstance(found, Installation), found
    return found


def test_upgrade_4_5_to_5_0(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    vm_before = vm_disk_digests(disk)
    assert len(vm_before) == 4
    report = run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    assert report.slot == "B"
    assert report.installed_version == "5.0.0"
    assert report.upgrade_status == "Installed (Reboot Required)"
    assert report.steps_done == tuple(s.value for s in UPGRADE_STEPS)
    notes = {n.name: n.message for n in report.vm_notes}
    assert "automatically" in notes["office-shared"]
    assert "by hand" in notes["finance-custom"]
    assert "by hand" in notes["lab-local"]

    found = _installation(disk)
    assert found.version == "4.5.0"  # still running the old slot until the reboot
    assert found.slots[found.state.pending_slot] == "5.0.0"  # type: ignore[index]
    assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    assert found.state.previous_version == "4.5.0"
    assert [e.file_name for e in found.boot_entries] == ["engine-1-a.conf", "engine-2-b+1-0.conf"]
    pv = {vm.name: vm.pv_drivers for vm in found.vms}
    assert pv == {
        "finance-custom": "4.5.0",
        "lab-local": "4.5.0",
        "office-shared": "5.0.0",
        "training-shared": "5.0.0",
    }
    assert found.keyboard == "us"
    assert not found.registered
    assert vm_disk_digests(disk) == vm_before

    # Running the same upgrade again (e.g. after an interruption) converges to the same disk.
    run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    again = _installation(disk)
    assert [e.file_name for e in again.boot_entries] == ["engine-1-a.conf", "engine-2-b+1-0.conf"]
    assert again.state == found.state
    assert vm_disk_digests(disk) == vm_before


def test_upgrade_keeps_or_changes_settings_as_planned(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    registration = Registration(RegistrationMode.SYNCHRONIZER, "sync.example", Secret("t0ken"))
    plan = _plan(
        engine_medium("5.0.0"),
        disk,
        InstallMode.UPGRADE,
        "5.0.0",
        keyboard="fr",
        registration=registration,
    )
    run_plan(plan)
    found = _installation(disk)
    assert found.keyboard == "fr"
    assert found.registered


def test_vm_published_for_a_newer_engine_is_reported(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G", with_vms=False)
    with open_installation(disk) as session:
        session.write_vm(VmRecord("future-shared", VmKind.SHARED, "5.5.0", "5.5.0"))
    add_sample_vms(disk, "4.5.0", (SampleVm("office-shared", VmKind.SHARED),), 1024 * 1024)
    report = run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    notes = {n.name: n.message for n in report.vm_notes}
    assert "will not run" in notes["future-shared"]
    pv = {vm.name: vm.pv_drivers for vm in _installation(disk).vms}
    assert pv == {"future-shared": "5.5.0", "office-shared": "5.0.0"}


def test_repair_same_version_keeps_data(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("5.0.0", size="1G")
    vm_before = vm_disk_digests(disk)
    with open_installation(disk) as session:
        session.esp.remove("/EFI/BOOT/BOOTX64.EFI")  # damage: repair puts it back
    report = run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.REPAIR, "5.0.0"))
    assert report.slot == "B"
    assert report.vm_notes == ()
    found = _installation(disk)
    assert found.version == "5.0.0"
    assert len(found.vms) == 4
    assert found.state.pending_slot is not None
    assert {vm.pv_drivers for vm in found.vms} == {"5.0.0"}
    with open_installation(disk, writable=False) as session:
        assert session.esp.exists("/EFI/BOOT/BOOTX64.EFI")
    assert vm_disk_digests(disk) == vm_before


def test_repair_mbr_in_place(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.0.0", size="1G")
    with open_installation(disk) as session:
        session.system.remove("/usr/lib/engine/engined")
    run_plan(_plan(engine_medium("4.0.0"), disk, InstallMode.REPAIR, "4.0.0"))
    with open_installation(disk, writable=False) as session:
        assert session.system.exists("/usr/lib/engine/engined")
    assert len(_installation(disk).vms) == 4


def test_migrate_4_0_mbr_to_4_5_gpt_in_place(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.0.0", size="1G")
    vm_before = vm_disk_digests(disk)
    slot_a = (65 * MIB, 128 * MIB)
    old_system = _region_digest(disk, *slot_a)
    report = run_plan(_plan(engine_medium("4.5.0"), disk, InstallMode.UPGRADE, "4.5.0"))
    assert report.slot == "B"
    assert "switch-table" in report.steps_done
    found = _installation(disk)
    assert found.layout.value == "gpt-ab"
    assert found.version == "4.0.0"
    assert found.slots == {Slot.A: "4.0.0", Slot.B: "4.5.0"}
    assert found.upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
    assert [p.start_bytes // MIB for p in found.partitions] == [1, 65, 193, 321]
    assert [e.file_name for e in found.boot_entries] == ["engine-1-a.conf", "engine-2-b+1-0.conf"]
    # the old system was not moved or rewritten: it is slot A now, byte for byte
    assert _region_digest(disk, *slot_a) == old_system
    assert vm_disk_digests(disk) == vm_before
    assert {vm.pv_drivers for vm in found.vms if vm.kind == "shared"} == {"4.5.0"}
    sgdisk = shutil.which("sgdisk")
    if sgdisk:
        check = subprocess.run([sgdisk, "-v", str(disk)], capture_output=True, text=True)
        assert "No problems found" in check.stdout, check.stdout


def _region_digest(disk: Path, start: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(disk, "rb") as handle:
        handle.seek(start)
        digest.update(handle.read(size))
    return digest.hexdigest()


def test_failed_upgrade_is_recorded_and_switches_nothing(
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import installer.engine.upgrade as upgrade

    disk = engine_disk("4.5.0", size="1G", with_vms=False)

    def disk_full(*_args: object, **_kw: object) -> None:
        raise HostError("mcopy failed: Disk full")

    monkeypatch.setattr(upgrade, "write_esp_kernel", disk_full)
    with pytest.raises(HostError, match="Disk full"):
        run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    found = _installation(disk)
    assert found.upgrade_status is UpgradeStatus.FAILED
    assert found.version == "4.5.0"
    assert found.state.pending_slot is None
    assert [e.file_name for e in found.boot_entries] == ["engine-1-a.conf"]  # B was retired
    monkeypatch.undo()
    run_plan(_plan(engine_medium("5.0.0"), disk, InstallMode.UPGRADE, "5.0.0"))
    assert _installation(disk).upgrade_status is UpgradeStatus.INSTALLED_REBOOT_REQUIRED
