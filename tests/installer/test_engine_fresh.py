"""Fresh install and erase through run_plan, on both layouts, checked with the probe and by
reading the partitions back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from disk_images.image import create_image, partition_image
from disk_images.layout import Slot, engine_partitions, table_type
from disk_images.probe import Installation, NoInstallation, probe
from disk_images.session import open_installation
from disk_images.state import UpgradeStatus
from enginekit.errors import EngineKitError
from enginekit.versions import DiskLayout
from installer.engine import run_plan
from installer.engine.bootloader import SYSTEMD_BOOT_EFI
from installer.engine.checkpoints import FRESH_STEPS
from installer.plan import (
    InstallMode,
    InstallPlan,
    Registration,
    RegistrationMode,
    Secret,
)
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory

pytestmark = [pytest.mark.root]
GIB = 1024**3


def _fresh(medium: Path, disk: Path, version: str, **kw: object) -> InstallPlan:
    return InstallPlan(
        medium=medium,
        target=disk,
        mode=InstallMode.FRESH,
        target_version=version,
        eula_accepted=True,
        **kw,  # type: ignore[arg-type]
    )


def test_fresh_gpt_install(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    disk = create_image(tmp_path / "disk.img", GIB)
    seen: list[tuple[str, float]] = []
    token = "tok-" + "s3cr3t" * 4
    plan = _fresh(
        engine_medium("5.0.0"),
        disk,
        "5.0.0",
        keyboard="de",
        registration=Registration(RegistrationMode.SYNCHRONIZER, "sync.example", Secret(token)),
    )
    report = run_plan(plan, lambda step, fraction: seen.append((step, fraction)))
    assert report.installed_version == "5.0.0"
    assert report.slot == "A"
    assert report.steps_done == tuple(s.value for s in FRESH_STEPS)
    fractions = [f for _, f in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert token not in repr(report)

    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.layout is DiskLayout.GPT_AB
    assert found.version == "5.0.0"
    assert found.slots == {Slot.A: "5.0.0", Slot.B: "5.0.0"}
    assert found.active_slot is Slot.A
    assert found.upgrade_status is UpgradeStatus.BLANK
    assert found.keyboard == "de"
    assert found.registered
    assert sorted(e.file_name for e in found.boot_entries) == ["engine-0-b.conf", "engine-1-a.conf"]
    with open_installation(disk, writable=False) as session:
        esp = session.esp
        assert esp.read("/EFI/BOOT/BOOTX64.EFI") == SYSTEMD_BOOT_EFI.read_bytes()
        assert b"default engine-*" in esp.read("/loader/loader.conf")
        entry = esp.read("/loader/entries/engine-1-a.conf").decode()
        assert "linux /engine/a/vmlinuz" in entry
        assert "engine.slot=A" in entry
        config = json.loads(session.storage.read("/engine/config.json"))
        assert config["registration"]["token"] == token  # only on the disk it belongs to
        assert session.read_release(Slot.B) is not None
        assert session.slot(Slot.A).exists("/usr/lib/engine/engined")


def test_fresh_mbr_install(tmp_path: Path, engine_medium: EngineMediumFactory) -> None:
    disk = create_image(tmp_path / "disk.img", GIB)
    report = run_plan(_fresh(engine_medium("4.0.0"), disk, "4.0.0"))
    assert report.slot is None
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.layout is DiskLayout.MBR
    assert found.version == "4.0.0"
    assert found.keyboard == "us"
    assert not found.registered
    raw = disk.read_bytes()[:512]
    assert raw[:440] == Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]
    with open_installation(disk, writable=False) as session:
        system = session.system
        assert system.exists("/boot/extlinux/ldlinux.sys")
        assert b"engine.slot=A" in system.read("/boot/extlinux/extlinux.conf")
        assert system.exists("/boot/vmlinuz")
        assert system.exists("/boot/initrd.img")


def test_incomplete_disk_is_refused_fresh_and_completed_by_erase(
    tmp_path: Path, engine_medium: EngineMediumFactory
) -> None:
    disk = create_image(tmp_path / "disk.img", GIB)
    # what a run killed after partitioning leaves behind
    partition_image(disk, table_type(DiskLayout.GPT_AB), engine_partitions(DiskLayout.GPT_AB, GIB))
    assert isinstance(probe(disk), NoInstallation)
    medium = engine_medium("4.5.0")
    # Not blank: a fresh install would silently overwrite it, so only erase may.
    with pytest.raises(EngineKitError, match="holds data"):
        run_plan(_fresh(medium, disk, "4.5.0"))
    plan = InstallPlan(
        medium,
        disk,
        InstallMode.ERASE,
        "4.5.0",
        eula_accepted=True,
        expected_disk_id=probe(disk).disk_id,
    )
    run_plan(plan)
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.version == "4.5.0"


def test_erase_reinstalls_and_drops_vms(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    before = probe(disk)
    assert isinstance(before, Installation)
    assert len(before.vms) == 4
    plan = InstallPlan(
        engine_medium("5.0.0"),
        disk,
        InstallMode.ERASE,
        "5.0.0",
        eula_accepted=True,
        expected_disk_id=before.disk_id,
    )
    run_plan(plan)
    after = probe(disk)
    assert isinstance(after, Installation)
    assert after.version == "5.0.0"
    assert after.vms == ()
    assert after.keyboard == "us"
