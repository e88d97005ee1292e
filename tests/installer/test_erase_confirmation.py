"""A disk with data is erased only when the user confirmed its disk id.

A disk the probe does not recognise as Engine but that is not blank (a 4.5.0 disk whose primary
GPT header is damaged, a foreign MBR table, a bare ext4 filesystem) is never wiped by a fresh
install. The existing-installation screen says what was found and offers only a confirmed
erase; the answer file must say `action = "erase"` with the disk id; the engine refuses FRESH on
it. `InstallPlan.expected_disk_id` carries the id the user confirmed, and the engine compares it
with its own probe taken while it holds the disk exclusively: an erase of a disk with data and
no id, or with the id of a disk that has changed since, is refused and nothing is written; the
confirmed id of this very disk goes through.

Real disks (the plugin's `engine_disk`, sfdisk, mkfs.ext4), real probes, the real medium and
the real CLI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from disk_images.probe import Installation, NoInstallation, NoInstallationKind, probe
from enginekit.process import run
from installer.engine import run_plan
from installer.engine.refusals import Refused
from installer.frontends.api import Installer, load_medium, load_target
from installer.model import Screen
from installer.plan import InstallMode, InstallPlan, Registration, RegistrationMode
from reference_builds.answer_files import FRESH_STANDALONE, erase_standalone
from reference_builds.pytest_plugin import sparse_digest

from .conftest import engine_install


def damage_primary_gpt(disk: Path) -> None:
    """Four bytes over the primary GPT header's CRC (LBA 1 + 16)."""
    with disk.open("r+b") as stream:
        stream.seek(528)
        stream.write(b"XXXX")


def foreign_mbr(tmp_path: Path) -> Path:
    disk = tmp_path / "foreign.img"
    with disk.open("wb") as stream:
        stream.truncate(512 << 20)
    run(["sfdisk", "--quiet", str(disk)], input=b"label: dos\n,64M,83\n")
    return disk


def bare_ext4(tmp_path: Path) -> Path:
    disk = tmp_path / "ext4.img"
    with disk.open("wb") as stream:
        stream.truncate(512 << 20)
    run(["mkfs.ext4", "-q", "-F", str(disk)])
    return disk


@pytest.fixture
def medium(iso: Path) -> Path:
    """The real 5.0.0 medium (the installer tests' shared module fixture)."""
    return iso


@pytest.mark.parametrize("make", [foreign_mbr, bare_ext4], ids=["foreign-mbr", "bare-ext4"])
def test_fresh_answers_refused_on_a_disk_with_data(
    tmp_path: Path, medium: Path, make: object
) -> None:
    assert callable(make)
    disk: Path = make(tmp_path)
    found = probe(disk)
    assert isinstance(found, NoInstallation)
    assert found.kind is not NoInstallationKind.BLANK
    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_STANDALONE)
    before = sparse_digest(disk)
    status, _, err = engine_install("--media", medium, "--target", disk, "--answers", answers)
    assert status == 2, err
    assert "holds data but no Engine installation" in err
    assert found.reason in err
    assert 'action = "erase"' in err
    assert "remove the [existing]" not in err
    assert sparse_digest(disk) == before
    # A dry run refuses the same way (it checks the same answers).
    status, _, err = engine_install(
        "--media", medium, "--target", disk, "--answers", answers, "--dry-run"
    )
    assert status == 2
    assert "holds data" in err


def test_the_existing_installation_screen_offers_only_erase_with_the_reason(
    tmp_path: Path, medium: Path
) -> None:
    disk = foreign_mbr(tmp_path)
    target = load_target(disk)
    installer = Installer(load_medium(medium), target, engine=lambda _plan, _progress: None)  # type: ignore[arg-type,return-value]
    installer.choose("install")
    installer.choose("next")
    installer.choose("accept")
    installer.choose("us")
    assert installer.screen is Screen.EXISTING
    view = installer.view
    assert "foreign partition table" in view.text
    assert target.disk_id is not None
    assert target.disk_id in view.text
    assert [c.value for c in view.choices] == ["erase"]
    assert view.can_quit
    # Without the typed disk id the screen repeats; a fresh install is not on offer at all.
    installer.choose("erase", confirm_erase="wrong")
    assert installer.screen is Screen.EXISTING
    assert "confirm with the disk id" in installer.message
    installer.choose("fresh")
    assert installer.screen is Screen.EXISTING
    assert target.disk_id is not None
    assert installer.choose("erase", confirm_erase=target.disk_id) is Screen.REGISTRATION
    assert installer.model.mode is InstallMode.ERASE


@pytest.mark.root
@pytest.mark.slow
def test_damaged_gpt_with_vms_is_not_wiped(
    tmp_path: Path, medium: Path, engine_disk: object
) -> None:
    assert callable(engine_disk)
    disk: Path = engine_disk("4.5.0", with_vms=True)
    damage_primary_gpt(disk)
    found = probe(disk)
    assert isinstance(found, NoInstallation), found
    assert found.reason.startswith("GPT header CRC mismatch")
    before = sparse_digest(disk)

    answers = tmp_path / "fresh.toml"
    answers.write_text(FRESH_STANDALONE)
    status, _, err = engine_install("--media", medium, "--target", disk, "--answers", answers)
    assert status == 2, err
    assert "GPT header CRC mismatch" in err
    assert "erase" in err
    assert sparse_digest(disk) == before

    # The engine's own last guard, whatever the caller says.
    plan = InstallPlan(
        medium=medium,
        target=disk,
        mode=InstallMode.FRESH,
        target_version="5.0.0",
        source_version=None,
        keyboard="us",
        registration=None,
        reboot=False,
        eula_accepted=True,
    )
    with pytest.raises(Refused, match=r"holds data: GPT header CRC mismatch.*; choose erase"):
        run_plan(plan)
    assert sparse_digest(disk) == before

    # Only the primary GPT is damaged: the disk id is the intact backup's disk GUID, not the
    # file name (which would confirm any disk of that name).
    assert found.disk_id is not None
    assert found.disk_id != disk.name
    assert found.disk_id.count("-") == 4, found.disk_id
    erase = tmp_path / "erase.toml"
    erase.write_text(erase_standalone(disk.name))
    status, out, err = engine_install("--media", medium, "--target", disk, "--answers", erase)
    assert status == 2, err
    assert f"confirm with the disk id '{found.disk_id}'" in err, err
    assert out == ""
    assert sparse_digest(disk) == before
    # The confirmed erase goes through.
    erase.write_text(erase_standalone(found.disk_id))
    status, _, err = engine_install("--media", medium, "--target", disk, "--answers", erase)
    assert status == 0, err
    after = probe(disk)
    assert not isinstance(after, NoInstallation)
    assert after.version == "5.0.0"
    assert after.vms == ()


def _data_disk(path: Path) -> Path:
    """Someone's disk: no partition table, some bytes near the start."""
    with path.open("wb") as stream:
        stream.truncate(512 << 20)
        stream.seek(4096)
        stream.write(b"someone's data")
    return path


def _erase(iso: Path, disk: Path, expected: str | None) -> InstallPlan:
    return InstallPlan(
        medium=iso,
        target=disk,
        mode=InstallMode.ERASE,
        target_version="5.0.0",
        keyboard="de",
        registration=Registration(RegistrationMode.STANDALONE),
        eula_accepted=True,
        expected_disk_id=expected,
    )


def test_erase_without_or_with_a_stale_id_is_refused(tmp_path: Path, iso: Path) -> None:
    disk = _data_disk(tmp_path / "disk.img")
    found = probe(disk)
    assert isinstance(found, NoInstallation)
    assert found.disk_id is not None
    assert found.disk_id.startswith("data-")
    before = sparse_digest(disk)
    with pytest.raises(Refused, match="an erase needs the disk id") as caught:
        run_plan(_erase(iso, disk, None))
    assert found.disk_id in caught.value.message
    # Confirmed, then the disk changed (another image copied over it) before the run.
    confirmed = found.disk_id
    with disk.open("r+b") as stream:
        stream.seek(4096)
        stream.write(b"other data!!!!")
    changed = sparse_digest(disk)
    with pytest.raises(Refused, match="the disk changed since it was confirmed"):
        run_plan(_erase(iso, disk, confirmed))
    assert sparse_digest(disk) == changed != before
    # The file name is not an id.
    with pytest.raises(Refused, match="the disk changed since it was confirmed"):
        run_plan(_erase(iso, disk, disk.name))
    assert sparse_digest(disk) == changed


@pytest.mark.root
def test_erase_with_the_confirmed_id_goes_through(tmp_path: Path, iso: Path) -> None:
    disk = _data_disk(tmp_path / "disk.img")
    found = probe(disk)
    run_plan(_erase(iso, disk, found.disk_id))
    after = probe(disk)
    assert isinstance(after, Installation)
    assert after.version == "5.0.0"


def test_the_screens_put_the_confirmed_id_in_the_plan(tmp_path: Path, iso: Path) -> None:
    disk = _data_disk(tmp_path / "disk.img")
    target = load_target(disk)
    installer = Installer(load_medium(iso), target, engine=lambda _plan, _progress: None)  # type: ignore[arg-type,return-value]
    for choice in ("install", "next", "accept", "us"):
        installer.choose(choice)
    assert target.disk_id is not None
    assert target.disk_id.startswith("data-")
    installer.choose("erase", confirm_erase=target.disk_id)
    plan = installer.model.to_plan()
    assert plan.mode is InstallMode.ERASE
    assert plan.expected_disk_id == target.disk_id
