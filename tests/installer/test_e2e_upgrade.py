"""End to end: a 4.5.0 disk with VMs, the unattended upgrade with the 5.0.0 medium, a real
UEFI boot of the new slot, and the first boot completed; and a migrated 4.0.0 disk. (The fallback
when the new slot cannot boot is tests/disk_images/test_boot_counting.py's, through the
command.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from commands.engine_install import main as engine_install_main
from disk_images.probe import Installation, probe
from disk_images.state import UpgradeStatus
from installer.engine import run_plan
from installer.plan import InstallMode, InstallPlan
from reference_builds.pytest_plugin import EngineDiskFactory, EngineMediumFactory, vm_disk_digests

pytestmark = [pytest.mark.root, pytest.mark.qemu, pytest.mark.slow]

ANSWERS = """\
[eula]
accept = true

[keyboard]
layout = "us"

[existing]
action = "upgrade"
"""


def _installation(disk: Path) -> Installation:
    found = probe(disk)
    assert isinstance(found, Installation), found
    return found


def test_unattended_upgrade_then_first_boot(
    tmp_path: Path,
    engine_disk: EngineDiskFactory,
    engine_medium: EngineMediumFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = engine_disk("4.5.0", size="2G")
    vm_before = vm_disk_digests(disk)
    answers = tmp_path / "answers.toml"
    answers.write_text(ANSWERS)
    medium = engine_medium("5.0.0")
    status = engine_install_main(
        ["--media", str(medium), "--target", str(disk), "--answers", str(answers)]
    )
    out = capsys.readouterr().out
    assert status == 0, out
    assert "Installed (Reboot Required)" in out

    assert engine_disk_main(["inspect", str(disk), "--json"]) == 0
    inspected = json.loads(capsys.readouterr().out)["engine"]
    assert inspected["upgrade_status"] == "Installed (Reboot Required)"
    assert inspected["slots"] == {"A": "4.5.0", "B": "5.0.0"}
    assert "engine-2-b+1-0.conf" in inspected["boot_entries"]
    assert _installation(disk).state.pending_slot is not None

    assert engine_disk_main(["boot", str(disk)]) == 0
    booted = capsys.readouterr().out
    assert "ENGINE RUNNING version=5.0.0 slot=B vms=4" in booted
    after = _installation(disk)
    assert after.version == "5.0.0"
    assert after.active_slot is not None
    assert after.active_slot.value == "B"
    assert after.upgrade_status is UpgradeStatus.BLANK
    assert after.state.pending_slot is None
    assert [e.file_name for e in after.boot_entries] == ["engine-1-a.conf", "engine-2-b.conf"]
    assert vm_disk_digests(disk) == vm_before


def test_migrated_4_0_disk_boots_4_5(
    engine_disk: EngineDiskFactory, engine_medium: EngineMediumFactory
) -> None:
    disk = engine_disk("4.0.0", size="1G")
    vm_before = vm_disk_digests(disk)
    plan = InstallPlan(
        engine_medium("4.5.0"), disk, InstallMode.UPGRADE, "4.5.0", eula_accepted=True
    )
    run_plan(plan)
    from disk_images.boot import boot_installed_disk

    result = boot_installed_disk(disk)
    running = result.running
    assert running is not None
    assert running.version == "4.5.0"
    assert running.vms == 4
    assert result.firmware.value == "uefi"
    assert result.blessed == "engine-2-b.conf"
    after = _installation(disk)
    assert after.version == "4.5.0"
    assert after.upgrade_status is UpgradeStatus.BLANK
    assert vm_disk_digests(disk) == vm_before
