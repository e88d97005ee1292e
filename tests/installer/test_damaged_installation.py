"""A damaged but recoverable Engine installation is reported as one, with its VMs, and the
installer's repair brings it back so that it boots: a disk image cut short by 1 MiB (its backup
GPT gone) and a disk whose state.json is corrupt. Real reference disks, real sgdisk, real
`engine-install` with an answer file, real QEMU boots."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from commands.engine_disk import main as engine_disk_main
from commands.engine_install import main as engine_install_main
from disk_images.layout import STATE_PATH
from disk_images.probe import Installation, probe
from disk_images.session import open_installation
from enginekit.process import run
from installer.frontends.api import Installer, load_medium, load_target
from installer.model import Screen
from reference_builds.disk import SAMPLE_VMS

pytestmark = [pytest.mark.root]

REPAIR_ANSWERS = '[eula]\naccept = true\n[keyboard]\nlayout = "us"\n[existing]\naction = "repair"\n'


def _inspect(disk: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert engine_disk_main(["inspect", str(disk), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert isinstance(doc, dict)
    return doc


def _repair_and_boot(
    disk: Path, medium: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = tmp_path / "repair.toml"
    answers.write_text(REPAIR_ANSWERS)
    status = engine_install_main(
        ["--media", str(medium), "--target", str(disk), "--answers", str(answers)]
    )
    captured = capsys.readouterr()
    assert status == 0, captured
    found = probe(disk)
    assert isinstance(found, Installation)
    assert found.damage == ()
    assert found.repairs == ()
    assert len(found.vms) == 4
    assert engine_disk_main(["boot", str(disk)]) == 0
    assert "ENGINE RUNNING version=4.5.0" in capsys.readouterr().out


@pytest.mark.qemu
@pytest.mark.slow
def test_lost_backup_gpt_is_damage_that_repair_fixes(
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    size = disk.stat().st_size
    os.truncate(disk, size - 1024 * 1024)
    doc = _inspect(disk, capsys)
    engine = doc["engine"]
    assert isinstance(engine, dict)
    assert engine["version"] == "4.5.0"
    assert engine["damage"] == [
        f"the backup GPT is missing: the GPT describes a disk of {size} bytes, the file has "
        f"{size - 1024 * 1024}"
    ]
    assert [r["repair"] for r in engine["repairs"]] == ["rebuild-backup-gpt"]
    assert isinstance(doc["vms"], list)
    assert len(doc["vms"]) == 4
    _repair_and_boot(disk, engine_medium("4.5.0"), tmp_path, capsys)
    assert disk.stat().st_size == size
    verify = run(["sgdisk", "-v", str(disk)]).stdout.decode()
    assert "No problems found" in verify


@pytest.mark.qemu
@pytest.mark.slow
def test_corrupt_state_is_damage_that_repair_fixes(
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    with open_installation(disk) as session:
        session.storage.write_atomic(STATE_PATH, b'{"active_slot": "A", "generation": ')
    doc = _inspect(disk, capsys)
    engine = doc["engine"]
    assert isinstance(engine, dict)
    assert engine["active_slot"] == "A"
    damage = engine["damage"]
    assert isinstance(damage, list)
    assert len(damage) == 1
    assert damage[0].startswith("storage:/engine/state.json: not valid JSON")
    assert [r["repair"] for r in engine["repairs"]] == ["rewrite-state"]
    assert isinstance(doc["vms"], list)
    assert len(doc["vms"]) == 4
    _repair_and_boot(disk, engine_medium("4.5.0"), tmp_path, capsys)


def test_screen5_shows_the_damage_and_erase_names_every_vm(
    engine_disk: Callable[..., Path], engine_medium: Callable[[str], Path]
) -> None:
    disk = engine_disk("4.5.0", size="1G")
    os.truncate(disk, disk.stat().st_size - 1024 * 1024)
    target = load_target(disk)
    installer = Installer(
        load_medium(engine_medium("5.0.0")),
        target,
        engine=lambda _plan, _progress: None,  # type: ignore[arg-type,return-value]
    )
    for choice in ("install", "next", "accept", "us"):
        installer.choose(choice)
    assert installer.screen is Screen.EXISTING
    text = installer.view.text
    assert "Damaged: the backup GPT is missing" in text
    assert "Upgrade or repair first fixes it: give the image back the size" in text
    assert "VMs: 4" in text
    assert [c.value for c in installer.view.choices] == ["upgrade", "erase"]
    assert target.disk_id is not None
    installer.choose("erase", confirm_erase=target.disk_id)
    installer.choose("standalone")
    summary = installer.view.text
    line = next(ln for ln in summary.splitlines() if ln.startswith("VMs deleted: "))
    deleted = line.removeprefix("VMs deleted: ").rstrip(".").split(", ")
    assert sorted(deleted) == sorted(vm.name for vm in SAMPLE_VMS)


@pytest.mark.qemu
@pytest.mark.slow
def test_a_missing_firmware_loader_is_brought_back_by_repair(
    engine_disk: Callable[..., Path],
    engine_medium: Callable[[str], Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """What `engine-disk boot`'s hint promises for an ESP that is readable but cannot boot."""
    disk = engine_disk("4.5.0", size="1G")
    with open_installation(disk) as session:
        session.esp.remove("/EFI/BOOT/BOOTX64.EFI")
    assert engine_disk_main(["boot", str(disk)]) == 2
    assert 'action = "repair"' in capsys.readouterr().err
    _repair_and_boot(disk, engine_medium("4.5.0"), tmp_path, capsys)
